"""Interrupted runs, bad checkpoints, bad data, numerical faults.

Signals go to a real training subprocess (train/shapes-u-net/train.py on generated
data). Where a test needs the process to be at a precise point when the signal
lands, it runs the script through DRIVER, which only adds a pause or a delay.
"""
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import eval as eval_script
from datasets.base import DatasetError
from utils import engine
from utils.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, save_checkpoint
from utils.data import ResumableBatchSampler, train_loader
from runs import tiny_config
from utils.engine import TrainConfig, Trainer
from utils.faults import EXIT_WRITE_FAILED, NonFiniteGuard

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "train/shapes-u-net/train.py"
N = 4  # the killed run stops after N iterations; the reference runs 2N
TINY = ["--model-kwargs", '{"width": 4, "depth": 2}', "--dataset-kwargs", '{"size": 32, "length": 12}',
        "--crop-size", "32", "--batch-size", "2", "--workers", "0", "--device", "cpu", "--no-progress",
        "--val-batch-size", "12", "--iters", str(2 * N), "--val-every", str(N)]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "REPO": str(ROOT)}

# Runs the training script with a test hook chosen by HOOK (nothing else changes):
#   after_save  pause once last.pth of iteration HOOK_AT is written
#   mid_write   pause on the HOOK_AT-th write of last.pth, after the temporary file is
#               complete and before it is renamed into place
#   slow        make each training step last at least HOOK_AT milliseconds
# A pause or the first slow step creates the file HOOK_MARKER.
DRIVER = r"""
import os, runpy, sys, time
sys.path.insert(0, os.environ["REPO"])
import utils.engine as engine
import utils.trainer as trainer_module
import utils.losses as losses
hook, at, marker = os.environ["HOOK"], int(os.environ["HOOK_AT"]), os.environ["HOOK_MARKER"]

def pause():
    open(marker, "w").close()
    time.sleep(300)

if hook == "after_save":
    save = trainer_module.save_checkpoint
    def hooked_save(state, path):
        save(state, path)
        if state["iteration"] == at and os.path.basename(path) == "last.pth":
            pause()
    trainer_module.save_checkpoint = hooked_save
elif hook == "mid_write":
    replace, writes = os.replace, [0]
    def hooked_replace(src, dst):
        if os.path.basename(dst) == "last.pth":
            writes[0] += 1
            if writes[0] == at:
                pause()
        return replace(src, dst)
    os.replace = hooked_replace
elif hook == "slow":
    forward = losses.SegmentationLoss.forward
    def slow_forward(self, *args):
        open(marker, "a").close()
        time.sleep(at / 1000)
        return forward(self, *args)
    losses.SegmentationLoss.forward = slow_forward
sys.argv = [sys.argv[1]] + sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def start(run_dir, *extra, hook=None, at=0, marker=None):
    """Start a training subprocess; stdout and stderr go to files in the run folder's parent."""
    command = [sys.executable, str(SCRIPT)] if hook is None else [sys.executable, "-c", DRIVER, str(SCRIPT)]
    env = {**ENV, "HOOK": hook or "", "HOOK_AT": str(at), "HOOK_MARKER": str(marker)}
    log = open(Path(str(run_dir) + ".log"), "ab")
    return subprocess.Popen(command + TINY + ["--run-dir", str(run_dir), *extra], env=env, stdout=log,
                            stderr=subprocess.STDOUT, cwd=ROOT)


def output(run_dir) -> str:
    return Path(str(run_dir) + ".log").read_text()


def finish(process, run_dir, timeout=240) -> None:
    assert process.wait(timeout) == 0, output(run_dir)


def wait_for(path: Path, process, timeout=120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f"the process ended (status {process.returncode}) before {path} appeared"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def assert_same_final_state(a: Path, b: Path) -> None:
    one, two = load_checkpoint(a), load_checkpoint(b)
    assert one["iteration"] == two["iteration"] == 2 * N
    for name, tensor in one["state_dict"].items():
        assert torch.equal(tensor, two["state_dict"][name]), f"weights differ: {name}"
    for key, slots in one["optimizer"]["state"].items():
        for slot, tensor in slots.items():
            assert torch.equal(tensor, two["optimizer"]["state"][key][slot]), f"optimiser state differs: {slot}"
    assert one["scheduler"] == two["scheduler"]
    assert one["metrics"] == two["metrics"] and one["best_metrics"] == two["best_metrics"]
    assert (one["best_score"], one["best_iteration"]) == (two["best_score"], two["best_iteration"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of 2N iterations, started at once, waited for when first needed."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    process = start(run_dir)

    def last() -> Path:
        finish(process, run_dir)
        return run_dir / "last.pth"
    yield last
    if process.poll() is None:
        process.kill()


# ---------------------------------------------------------------- interruptions

def test_sigkill_after_n_iterations_then_resume_matches_an_uninterrupted_run(tmp_path, reference):
    run_dir, marker = tmp_path / "run", tmp_path / "paused"
    process = start(run_dir, hook="after_save", at=N, marker=marker)
    wait_for(marker, process)
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    assert load_checkpoint(run_dir / "last.pth")["iteration"] == N
    finish(start(run_dir, "--resume"), run_dir)
    assert f"resumed from {run_dir / 'last.pth'} at iteration {N}" in output(run_dir)
    assert_same_final_state(reference(), run_dir / "last.pth")
    assert load_checkpoint(run_dir / "best.pth")["best_score"] == load_checkpoint(reference())["best_score"]


def test_sigterm_finishes_the_step_writes_last_pth_and_resume_is_exact(tmp_path, reference):
    run_dir, marker = tmp_path / "run", tmp_path / "stepping"
    process = start(run_dir, hook="slow", at=300, marker=marker)
    wait_for(marker, process)
    time.sleep(0.5)  # into the second or third step
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 128 + signal.SIGTERM, output(run_dir)
    state = load_checkpoint(run_dir / "last.pth")
    stopped = state["iteration"]
    assert 1 <= stopped < 2 * N
    assert "SIGTERM received: finishing the current step" in output(run_dir)
    assert f"stopped by SIGTERM at iteration {stopped}/{2 * N}" in output(run_dir)
    assert "--resume" in output(run_dir)
    finish(start(run_dir, "--resume"), run_dir)
    assert_same_final_state(reference(), run_dir / "last.pth")


@pytest.mark.parametrize("how", ["sigkill", "two sigterms"])
def test_death_during_a_checkpoint_write_keeps_the_previous_file(tmp_path, how):
    run_dir, marker = tmp_path / "run", tmp_path / "paused"
    process = start(run_dir, hook="mid_write", at=2, marker=marker)  # the write at iteration 2N
    wait_for(marker, process)
    if how == "sigkill":
        process.send_signal(signal.SIGKILL)
        assert process.wait(30) == -signal.SIGKILL
    else:
        began = time.monotonic()
        process.send_signal(signal.SIGTERM)  # the handler runs during the pause: the save goes on
        time.sleep(0.5)
        assert process.poll() is None
        process.send_signal(signal.SIGTERM)  # a second signal exits at once
        assert process.wait(30) == 128 + signal.SIGTERM
        assert time.monotonic() - began < 20  # not the 300 s pause
        assert "SIGTERM again: exiting at once" in output(run_dir)
    assert load_checkpoint(run_dir / "last.pth")["iteration"] == N  # whole, and the previous one
    stale = list(run_dir.glob(".last.pth.*.tmp"))
    assert len(stale) == 1
    # the next start removes what the killed write left
    Trainer(TrainConfig(**{**load_checkpoint(run_dir / "last.pth")["config"], "resume": True}))
    assert not list(run_dir.glob(".*.tmp"))


def test_sigkill_at_random_moments_never_breaks_last_or_best(tmp_path):
    run_dir = tmp_path / "run"
    rng = random.Random(0)
    for cycle in range(3):
        extra = ["--iters", "400", "--val-every", "1"] + (["--resume"] if cycle else [])
        saved = (run_dir / "last.pth").stat().st_mtime_ns if cycle else None
        process = start(run_dir, *extra)
        wait_for(run_dir / "last.pth", process)
        while (run_dir / "last.pth").stat().st_mtime_ns == saved:  # until this process has saved
            assert process.poll() is None, output(run_dir)
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.5))
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        for name in ("last.pth", "best.pth"):
            state = load_checkpoint(run_dir / name)  # raises if broken
            assert state["iteration"] >= 1
            model_from_checkpoint(state)


def test_a_failed_checkpoint_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pth"
    save_checkpoint({"iteration": 1, "w": torch.ones(1000)}, path)
    before = path.read_bytes()

    def disk_full_half_way(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04" + b"\0" * 1000)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full_half_way)
    with pytest.raises(CheckpointError, match=r"cannot write checkpoint .*last.pth \(the previous file is "
                                              r"unchanged\): .*No space left"):
        save_checkpoint({"iteration": 2, "w": torch.zeros(1000)}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]


def tiny(run_dir, **overrides) -> TrainConfig:
    return tiny_config(run_dir, **{"dataset_kwargs": {"size": 32, "length": 16}, "val_batch_size": 16, **overrides})


def test_a_failed_write_during_training_stops_with_a_clear_error(tmp_path, monkeypatch, capsys):
    trainer = Trainer(tiny(tmp_path))
    real_save = torch.save

    def fail_at_iteration_8(obj, f, *args, **kwargs):
        if obj.get("iteration") == 8:
            raise OSError(28, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", fail_at_iteration_8)
    with pytest.raises(SystemExit) as stop:
        trainer.fit()
    assert stop.value.code == EXIT_WRITE_FAILED  # a status of its own: free space before a retry
    assert "cannot write checkpoint" in capsys.readouterr().err
    assert load_checkpoint(tmp_path / "last.pth")["iteration"] == 4


def test_an_unwritable_run_folder_fails_at_start(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(SystemExit, match="cannot write to run folder"):
        Trainer(tiny(blocker / "run"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_run_folder_fails_at_start(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run_dir.chmod(0o555)
    try:
        with pytest.raises(SystemExit, match="cannot write to run folder"):
            Trainer(tiny(run_dir))
    finally:
        run_dir.chmod(0o755)


def test_too_little_free_space_fails_at_start(tmp_path, monkeypatch, capsys):
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=100_000))
    started = []
    monkeypatch.setattr(Trainer, "fit", lambda self: started.append(1))
    with pytest.raises(SystemExit) as stop:
        engine.run(tiny(tmp_path), [])
    assert stop.value.code == EXIT_WRITE_FAILED
    assert re.search(r"not enough free space for checkpoints in .*MiB free, about .*MiB", capsys.readouterr().err)
    assert not started and not (tmp_path / "last.pth").exists()
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=10 ** 9))
    Trainer(tiny(tmp_path))  # enough: starts


# ---------------------------------------------------------------- bad checkpoints

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("trained")
    Trainer(tiny(run_dir, iters=4)).fit()
    return run_dir / "last.pth"


def test_crafted_truncated_and_foreign_files_are_rejected_with_the_reason(tmp_path, trained):
    class RunsCode:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    torch.save({"format": "semseg-checkpoint-v1", "state_dict": RunsCode()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="refusing to load .*could run code"):
        load_checkpoint(tmp_path / "evil.pth")
    assert not (tmp_path / "pwned").exists()

    data = trained.read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated, corrupt or not a PyTorch file"):
        load_checkpoint(tmp_path / "truncated.pth")
    torch.save([torch.ones(1)], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="not a checkpoint of this repository"):
        load_checkpoint(tmp_path / "list.pth")
    with pytest.raises(SystemExit, match="truncated"):
        eval_script.main([str(tmp_path / "truncated.pth"), "--device", "cpu", "--workers", "0"])


def test_checkpoints_of_another_model_or_class_count_say_which(tmp_path, trained):
    state = load_checkpoint(trained)
    for name, change, message in [
        ("model", {"model": "no_such_net"}, "model 'no_such_net', which this repository does not define"),
        ("kwargs", {"model_kwargs": {"width": 8, "depth": 2}}, "do not fit model 'u_net' with 4 classes"),
        ("classes", {"num_classes": 7}, "do not fit model 'u_net' with 7 classes"),
    ]:
        with pytest.raises(CheckpointError, match=message):
            model_from_checkpoint({**state, **change})
        save_checkpoint({**state, **change}, tmp_path / f"{name}.pth")
        with pytest.raises((SystemExit, CheckpointError), match=message):
            eval_script.main([str(tmp_path / f"{name}.pth"), "--device", "cpu", "--workers", "0"])

    for change, message in [({"model": "seg_net"}, "holds model 'seg_net', but this run trains 'u_net'"),
                            ({"num_classes": 7}, "has 7 classes, but data set 'shapes' has 4"),
                            ({"model_kwargs": {"width": 8}}, "does not fit this run's 'u_net'")]:
        run_dir = tmp_path / f"resume-{len(message)}"
        run_dir.mkdir()
        if "model_kwargs" in change:
            other = Trainer(tiny(tmp_path / "wide", model_kwargs={"width": 8, "depth": 2}, iters=1, val_every=1))
            other.fit()
            shutil.copy(tmp_path / "wide" / "last.pth", run_dir / "last.pth")
        else:
            save_checkpoint({**state, **change}, run_dir / "last.pth")
        with pytest.raises(CheckpointError, match=message):
            Trainer(tiny(run_dir, resume=True))

    save_checkpoint({**state, "model": "other_net", "state_dict": {"head.weight": torch.ones(3, 3)}},
                    tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="--init-from .*no tensor of its model 'other_net' .* matches "
                                              "model 'u_net' with 4 classes"):
        Trainer(tiny(tmp_path / "init", init_from=str(tmp_path / "other.pth")))


# ---------------------------------------------------------------- bad data

def make_folder_data(root: Path, bad: dict) -> Path:
    """A `folder` data set of 8 good 32x32 samples plus the named bad ones, in train; val holds 2 other
    good samples and a copy of each bad one (`<stem>_val`: split lists must not share a stem)."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("background\nthing\nother\n")
    stems = [f"good{i}" for i in range(8)] + list(bad)
    val_stems = ["val0", "val1"] + [f"{stem}_val" for stem in bad]
    bad = {**bad, **{f"{stem}_val": kind for stem, kind in bad.items()}}
    for stem in stems + val_stems:
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / "images" / f"{stem}.png")
        Image.fromarray(rng.integers(0, 3, (32, 32), dtype=np.uint8), mode="L").save(root / "masks" / f"{stem}.png")
    for stem, kind in bad.items():
        if kind == "truncated image":
            data = (root / "images" / f"{stem}.png").read_bytes()
            (root / "images" / f"{stem}.png").write_bytes(data[:60])
        elif kind == "mask size":
            Image.fromarray(np.zeros((16, 32), np.uint8), mode="L").save(root / "masks" / f"{stem}.png")
        elif kind == "label id":
            Image.fromarray(np.full((32, 32), 7, np.uint8), mode="L").save(root / "masks" / f"{stem}.png")
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("\n".join(stems))
    (root / "splits" / "val.txt").write_text("\n".join(val_stems))
    return root


BAD = {"broken": "truncated image", "small": "mask size", "alien": "label id"}


@pytest.mark.parametrize("workers", [0, 1])
@pytest.mark.parametrize("stem", list(BAD))
def test_a_bad_sample_is_an_error_naming_the_file(tmp_path, stem, workers):
    root = make_folder_data(tmp_path / "data", {stem: BAD[stem]})
    cfg = tiny(tmp_path / "run", dataset="folder", data_root=str(root), dataset_kwargs={}, batch_size=9,
               iters=1, workers=workers)
    with pytest.raises(DatasetError, match=f"{stem}.png"):  # a worker's error surfaces with its cause
        Trainer(cfg).fit()


def test_skip_bad_samples_logs_each_and_keeps_the_batch_size(tmp_path, capfd):
    root = make_folder_data(tmp_path / "data", BAD)
    cfg = tiny(tmp_path / "run", dataset="folder", data_root=str(root), dataset_kwargs={}, batch_size=5,
               iters=4, val_every=4, val_batch_size=2, skip_bad_samples=True)
    trainer = Trainer(cfg)
    sizes = [images.shape[0] for images, _ in trainer.train_loader]
    assert sizes and set(sizes) == {5}
    trainer.fit()
    log = capfd.readouterr().err
    for stem in BAD:
        assert "skipping bad training sample" in log and f"{stem}.png" in log
        assert "skipping bad evaluation sample" in log
    assert load_checkpoint(tmp_path / "run" / "last.pth")["iteration"] == 4


class KillsItsWorker(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, key):
        os.kill(os.getpid(), signal.SIGKILL)


def test_a_crashed_worker_names_its_cause():
    loader = train_loader(KillsItsWorker(), ResumableBatchSampler(4, 2, 0), workers=1, pin_memory=False)
    with pytest.raises(RuntimeError, match="DataLoader worker .*(killed by signal|exited unexpectedly)"):
        next(iter(loader))


# ---------------------------------------------------------------- bad flags

@pytest.mark.parametrize("argv,message", [
    (["--model", "nope"], "invalid choice: 'nope' (choose from"),
    (["--dataset", "nope"], "choose from"),
    (["--lr", "-0.1"], "--lr must be a positive number"),
    (["--scale-min", "0"], "need 0 < --scale-min"),
    (["--scale-min", "-1", "--scale-max", "-0.5"], "need 0 < --scale-min"),
    (["--val-mode", "slide", "--val-tile", "16", "--val-stride", "8"], "--crop-size 32 exceeds --val-tile 16"),
    (["--max-nonfinite-steps", "0"], "--max-nonfinite-steps must be >= 1"),
])
def test_bad_flags_fail_before_any_work_listing_valid_values(tmp_path, argv, message, capsys):
    with pytest.raises(SystemExit):
        engine.run(tiny(tmp_path / "run"), argv)
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_config_built_in_code_is_checked_too(tmp_path):
    with pytest.raises(ValueError, match="unknown model 'nope'; choose one of: .*u_net"):
        Trainer(tiny(tmp_path, model="nope"))
    with pytest.raises(ValueError, match="unknown dataset 'nope'; choose one of: .*shapes"):
        Trainer(tiny(tmp_path, dataset="nope"))
    with pytest.raises(ValueError, match="--optimizer 'lbfgs' is not one of: sgd, adamw"):
        Trainer(tiny(tmp_path, optimizer="lbfgs"))
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------- numerical faults

class PoisonedLoss(nn.Module):
    """The real loss, times NaN at the given (1-based) iterations."""

    def __init__(self, trainer, bad) -> None:
        super().__init__()
        self.inner, self.trainer, self.bad = trainer.criterion, trainer, bad

    def forward(self, *args):
        loss = self.inner(*args)
        return loss * float("nan") if self.bad(self.trainer.state.iteration + 1) else loss


def test_a_few_non_finite_steps_are_skipped_and_training_goes_on(tmp_path, capfd):
    trainer = Trainer(tiny(tmp_path, iters=8, log_every=4, max_nonfinite_steps=3))
    trainer.criterion = PoisonedLoss(trainer, lambda it: it in (2, 3, 6))
    trainer.fit()
    state = load_checkpoint(tmp_path / "last.pth")
    assert state["iteration"] == 8
    assert all(torch.isfinite(t).all() for t in state["state_dict"].values() if t.is_floating_point())
    assert all(torch.isfinite(t).all() for s in state["optimizer"]["state"].values() for t in s.values())
    err = capfd.readouterr().err
    assert "[4/8] skipped 2 step(s) with a non-finite" in err and "[8/8] skipped 1 step(s)" in err


@pytest.mark.parametrize("deferred", [False, True])
def test_consecutive_non_finite_steps_stop_the_run_keeping_last_pth(tmp_path, monkeypatch, capsys, deferred):
    # deferred: counters read only at sync points, as on CUDA (validations at 3, 6, 9, logs at 5, 10)
    monkeypatch.setattr(NonFiniteGuard, "deferred", property(lambda self: deferred))
    trainer = Trainer(tiny(tmp_path, iters=20, val_every=3, log_every=5, max_nonfinite_steps=3))
    trainer.criterion = PoisonedLoss(trainer, lambda it: it >= 6)
    with pytest.raises(SystemExit) as stop:
        trainer.fit()
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert f"stopping at iteration {9 if deferred else 8}: 3 consecutive steps had a non-finite loss or " \
           f"gradient, iterations 6..8" in err
    assert "last.pth (iteration 6) is kept" in err
    state = load_checkpoint(tmp_path / "last.pth")
    assert state["iteration"] == 6
    assert all(torch.isfinite(t).all() for t in trainer.model.state_dict().values() if t.is_floating_point())


def test_the_fused_optimiser_skips_on_the_device_without_a_host_branch():
    if not torch.cuda.is_available():
        try:
            torch.optim.AdamW([nn.Parameter(torch.ones(1))], fused=True)
        except (RuntimeError, ValueError):
            pytest.skip("no fused AdamW on the CPU")
    weight = nn.Parameter(torch.ones(3))
    optimizer = torch.optim.AdamW([weight], lr=0.1, fused=True)
    guard = NonFiniteGuard(optimizer, limit=2, device=torch.device("cpu"))
    assert guard.fused
    history = []
    for iteration, value in enumerate([1.0, float("nan"), float("inf"), 1.0], start=1):
        weight.grad = torch.full((3,), value)
        guard.step(torch.tensor(value), iteration)
        history.append(weight.detach().clone())
    assert torch.equal(history[0], history[1]) and torch.equal(history[1], history[2])
    assert not torch.equal(history[2], history[3]) and torch.isfinite(history[3]).all()
    assert int(optimizer.state[weight]["step"]) == 2 and int(guard.tripped_at) == 3


def test_a_signal_at_a_validation_iteration_leaves_the_validation_to_the_resumed_run(tmp_path, monkeypatch):
    uninterrupted = Trainer(tiny(tmp_path / "a"))
    uninterrupted.fit()
    trainer = Trainer(tiny(tmp_path / "b"))
    step = NonFiniteGuard.step

    def signal_during_step_4(self, loss, iteration):
        step(self, loss, iteration)
        if iteration == 4:
            trainer.signals.received = signal.SIGTERM  # what the handler records

    monkeypatch.setattr(NonFiniteGuard, "step", signal_during_step_4)
    with pytest.raises(SystemExit) as stop:
        trainer.fit()
    assert stop.value.code == 128 + signal.SIGTERM
    state = load_checkpoint(tmp_path / "b" / "last.pth")
    assert state["iteration"] == 4 and state["validation_pending"] and not (tmp_path / "b" / "best.pth").exists()
    monkeypatch.setattr(NonFiniteGuard, "step", step)
    resumed = Trainer(tiny(tmp_path / "b", resume=True))
    resumed.fit()
    assert_same_final_state(tmp_path / "a" / "last.pth", tmp_path / "b" / "last.pth")
    assert load_checkpoint(tmp_path / "b" / "best.pth")["iteration"] == uninterrupted.state.best_iteration
