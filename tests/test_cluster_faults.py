"""Where cluster runs really die: elastic restarts, two runs in one folder, a disk that fills up.

The training processes are real: train/shapes-u-net/train.py on generated data, or
tests/distributed_worker.py under torchrun (gloo, CPU).
"""
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import eval as eval_script
from runs import tiny_config, train_until_killed
from test_distributed import launch, train_flags
from utils.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from utils.cli import parse_config
from utils.engine import TrainConfig, Trainer
from utils.event_log import SafeEventWriter
from utils.faults import EXIT_WRITE_FAILED
from utils.run_lock import LOCK_NAME, RunFolderInUse, lock_run_folder

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "train/shapes-u-net/train.py"
TINY = ["--model-kwargs", '{"width": 4, "depth": 2}', "--dataset-kwargs", '{"size": 32, "length": 12}',
        "--crop-size", "32", "--batch-size", "2", "--workers", "0", "--device", "cpu", "--no-progress",
        "--val-batch-size", "12", "--iters", "8", "--val-every", "4"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "REPO": str(ROOT)}

# Runs the training script with one change, chosen by the environment:
#   FULL=tmpfs    right after last.pth of iteration 4 is written, fill the run folder's (small
#                 tmpfs) disk with a file
#   FULL=patched  from then on, every checkpoint write fails part-way and every event-file write
#                 fails, with ENOSPC
#   MEET=DIR      two runs meet at the run folder's lock: each leaves a file in DIR just before it
#                 tries the lock, and the one that gets it waits for the other's file, so that
#                 both are sure to try while the first still holds it
DRIVER = r"""
import errno, os, runpy, sys, time
sys.path.insert(0, os.environ["REPO"])
import torch
import utils.run_setup as run_setup
import utils.trainer as trainer
from tensorboard.compat.tensorflow_stub.io.gfile import LocalFileSystem

def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

def half_then_no_space(obj, f, *args, **kwargs):
    f.write(b"PK\x03\x04" + bytes(1000))
    no_space()

def fill(folder):
    with open(os.path.join(folder, "filler"), "wb") as f:
        try:
            while True:
                f.write(bytes(1 << 16))
                f.flush()
        except OSError:
            pass

save = trainer.save_checkpoint
def save_then_fill(state, path):
    save(state, path)
    if state["iteration"] == 4 and os.path.basename(path) == "last.pth":
        if os.environ["FULL"] == "tmpfs":
            fill(os.path.dirname(path))
        else:
            torch.save = half_then_no_space
            LocalFileSystem.append = LocalFileSystem.write = no_space
if os.environ.get("FULL"):
    trainer.save_checkpoint = save_then_fill

lock = run_setup.lock_run_folder
def meet_at_the_lock(folder):
    meet = os.environ["MEET"]
    open(os.path.join(meet, str(os.getpid())), "w").close()
    held = lock(folder)
    deadline = time.monotonic() + 120
    while len(os.listdir(meet)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    return held
if os.environ.get("MEET"):
    run_setup.lock_run_folder = meet_at_the_lock
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def train(run_dir, *extra, env=None, log=None) -> subprocess.Popen:
    """The training script in a subprocess (through DRIVER when `env` is given); its output goes to
    `log` (default <run_dir>.log)."""
    log = open(log or Path(str(run_dir) + ".log"), "ab")
    command = [sys.executable, str(SCRIPT)] if env is None else [sys.executable, "-c", DRIVER, str(SCRIPT)]
    return subprocess.Popen(command + TINY + ["--run-dir", str(run_dir), *extra], env={**ENV, **(env or {})},
                            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


def output(run_dir) -> str:
    return Path(str(run_dir) + ".log").read_text()


# ---------------------------------------------------------------- --resume auto

def test_resume_auto_is_a_flag_word_and_plain_resume_stays(tmp_path, capsys):
    assert parse_config(TrainConfig(), ["--resume", "auto"]).resume == "auto"
    assert parse_config(TrainConfig(), ["--resume"]).resume is True
    assert parse_config(TrainConfig(), ["--resume", "--no-resume"]).resume is False
    with pytest.raises(SystemExit):
        parse_config(TrainConfig(), ["--resume", "always"])
    assert "invalid choice: 'always' (choose from 'auto')" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--resume takes no value or 'auto', got 'yes'"):
        tiny_config(tmp_path, resume="yes").validate()


def test_resume_auto_starts_afresh_then_continues_where_the_run_stopped(tmp_path, monkeypatch):
    fresh = Trainer(tiny_config(tmp_path, resume="auto"))  # an empty folder: a first start
    assert not fresh.resuming and fresh.state.iteration == 0
    train_until_killed(Trainer, tiny_config(tmp_path, resume="auto"), 4, monkeypatch)
    again = Trainer(tiny_config(tmp_path, resume="auto"))  # the same command line after the kill
    assert again.resuming and again.state.iteration == 4
    again.fit()
    assert load_checkpoint(tmp_path / "last.pth")["iteration"] == 8
    # Requeued once more after the end: it resumes at the last iteration and has nothing left to do.
    done = Trainer(tiny_config(tmp_path, resume="auto"))
    assert done.state.iteration == 8
    done.fit()
    assert load_checkpoint(tmp_path / "last.pth")["iteration"] == 8


def test_resume_auto_refuses_checkpoints_of_another_configuration(tmp_path):
    Trainer(tiny_config(tmp_path / "one", iters=1, val_every=1)).fit()
    other = {**load_checkpoint(tmp_path / "one" / "last.pth"), "model": "seg_net"}  # as another run's
    for name in ("last.pth", "best.pth"):  # best.pth alone: its run stopped during its first save
        folder = tmp_path / f"with-{name}"
        folder.mkdir()
        save_checkpoint(other, folder / name)
        message = "holds model 'seg_net'" if name == "last.pth" else "belongs to another run \\('seg_net' on"
        with pytest.raises(CheckpointError, match=message):
            Trainer(tiny_config(folder, resume="auto"))
        assert (folder / name).exists()


def test_resume_auto_sets_aside_a_best_pth_left_without_last_pth(tmp_path, capsys):
    Trainer(tiny_config(tmp_path, iters=4)).fit()
    (tmp_path / "last.pth").unlink()
    best = (tmp_path / "best.pth").read_bytes()
    trainer = Trainer(tiny_config(tmp_path, resume="auto"))
    assert not trainer.resuming and trainer.state.iteration == 0
    kept = list(tmp_path.glob("replaced-*/best.pth"))
    assert len(kept) == 1 and kept[0].read_bytes() == best
    assert "holds best.pth but no last.pth to continue from; starting afresh" in capsys.readouterr().out
    assert (tmp_path / LOCK_NAME).exists()  # the lock stays in place, held


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_backend_available("gloo"),
                    reason="needs torch.distributed with gloo")
def test_an_elastic_restart_after_a_sigkilled_worker_ends_with_the_uninterrupted_weights(tmp_path, monkeypatch):
    # One command line for both runs: --resume auto starts afresh in the empty folders. In the
    # second, rank 1 kills itself right after the save at iteration 4; torchrun restarts the
    # group, which continues from last.pth. A fresh key store per restart, as docs/scaling.md
    # says: with torchrun's shared one, the restarted ranks could read the dead ones' addresses.
    monkeypatch.setenv("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "1")
    flags = ["--batch-size", "2", "--iters", "8", "--val-every", "4", "--resume", "auto"]
    restarts = ["--max-restarts", "2"]
    (tmp_path / "ref").mkdir()  # where the reference's ranks write their metrics
    killed = launch(["train", tmp_path, "--kill-at", "4", *train_flags(tmp_path / "killed", *flags)],
                    torchrun=restarts, wait=False)
    reference = launch(["train", tmp_path / "ref", *train_flags(tmp_path / "reference", *flags)], torchrun=restarts,
                       timeout=300)
    stdout, stderr = killed.communicate(timeout=300)
    assert killed.returncode == 0, stdout[-3000:] + stderr[-6000:]
    assert reference.returncode == 0, reference.stdout[-3000:] + reference.stderr[-6000:]
    assert f"resumed from {tmp_path / 'killed' / 'last.pth'} at iteration 4" in stdout
    assert "resumed from" not in reference.stdout
    record = json.loads((tmp_path / "killed" / "config.json").read_text())
    assert [r["iteration"] for r in record["resumes"]] == [4]  # exactly one restart, at iteration 4
    one, two = load_checkpoint(tmp_path / "killed" / "last.pth"), load_checkpoint(tmp_path / "reference" / "last.pth")
    assert one["iteration"] == two["iteration"] == 8 and one["world_size"] == two["world_size"] == 2
    # Observed: bitwise equal (same processes, batch and data order; gloo sums two ranks in a fixed order).
    for name, tensor in two["state_dict"].items():
        assert torch.equal(one["state_dict"][name], tensor), name
    for key, slots in two["optimizer"]["state"].items():
        for slot, tensor in slots.items():
            assert torch.equal(one["optimizer"]["state"][key][slot], tensor), slot
    assert one["metrics"] == two["metrics"] and one["best_score"] == two["best_score"]


# ---------------------------------------------------------------- one run per folder

HOLD_LOCK = ("import sys, time; sys.path.insert(0, sys.argv[1]); from pathlib import Path; "
             "from utils.run_lock import lock_run_folder; lock_run_folder(Path(sys.argv[2])); "
             "print('locked', flush=True); time.sleep(300)")


def test_a_locked_folder_names_its_holder_and_a_dead_holder_blocks_nothing(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(ROOT), str(tmp_path)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(RunFolderInUse, match=rf"run folder {tmp_path} is in use by another run \(process "
                                                 rf"{holder.pid} on host {os.uname().nodename}, started "):
            lock_run_folder(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert f'"pid": {holder.pid}' in (tmp_path / LOCK_NAME).read_text()  # the stale record of a dead run
    lock = lock_run_folder(tmp_path)  # killed with SIGKILL: the kernel dropped its lock
    try:
        assert f'"pid": {os.getpid()}' in os.pread(lock._fd, 4096, 0).decode()
    finally:
        lock.release()


def test_two_runs_started_together_into_one_folder(tmp_path):
    run_dir, meet = tmp_path / "run", tmp_path / "meet"
    meet.mkdir()
    first, second = (train(run_dir, env={"MEET": str(meet)}) for _ in range(2))  # the same moment and folder
    statuses = {first.wait(240), second.wait(240)}
    log = output(run_dir)
    assert statuses == {0, 1}, log
    winner = first if first.returncode == 0 else second
    assert log.count(f"run folder {run_dir} is in use by another run (process {winner.pid} on host "
                     f"{os.uname().nodename}") == 1, log
    assert log.count("best mean_iu") == 1  # the first ends normally
    state = load_checkpoint(run_dir / "last.pth")
    assert state["iteration"] == 8
    assert json.loads((run_dir / "config.json").read_text())["resumes"] == []
    events = [p.name for p in run_dir.glob("events.out.tfevents.*")]
    assert events and all(f".{winner.pid}." in name for name in events), events  # the loser wrote none


def test_a_resume_into_a_running_folder_stops_and_eval_reads_it_freely(tmp_path):
    run_dir = tmp_path / "run"
    running = train(run_dir, "--iters", "400", "--val-every", "2")
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "last.pth").exists():
            assert running.poll() is None and time.monotonic() < deadline, output(run_dir)
            time.sleep(0.05)
        resumed = subprocess.run([sys.executable, str(SCRIPT), *TINY, "--run-dir", str(run_dir), "--resume"],
                                 env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert resumed.returncode == 1, resumed.stdout + resumed.stderr
        assert f"is in use by another run (process {running.pid} on host" in resumed.stderr
        metrics = eval_script.main([str(run_dir / "last.pth"), "--device", "cpu", "--workers", "0"])
        assert 0 <= metrics["mean_iu"] <= 1
        assert running.poll() is None  # untouched by either
    finally:
        running.kill()
        running.wait()


# ---------------------------------------------------------------- a full disk

def mount_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir()
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


@pytest.mark.parametrize("full", ["tmpfs", "patched"])
def test_a_disk_that_fills_up_mid_run(tmp_path, full):
    disk = tmp_path / "disk"
    if full == "tmpfs" and not mount_tmpfs(disk, "8m"):
        pytest.skip("cannot mount a tmpfs here (needs root); the patched variant covers the same outcome")
    try:
        run_dir, log_file = disk / "run", tmp_path / "train.log"  # the log on another disk
        status = train(run_dir, env={"FULL": full}, log=log_file).wait(240)
        log = log_file.read_text()
        assert status == EXIT_WRITE_FAILED, log
        # One line for the events, reported when first seen, and one for the stop.
        assert log.count(f"warning: cannot write TensorBoard events in {run_dir} (OSError: [Errno 28] No "
                         f"space left on device); training goes on without them") == 1, log
        stops = [line for line in log.splitlines() if line.startswith("stopping at")]
        assert len(stops) == 1, log
        assert stops[0].startswith(f"stopping at iteration 8: cannot write checkpoint {run_dir}/")
        assert "No space left on device" in stops[0] and f"{run_dir} keeps last.pth of iteration 4" in stops[0]
        assert "Traceback" not in log and "Exception in thread" not in log, log
        assert load_checkpoint(run_dir / "last.pth")["iteration"] == 4
        assert load_checkpoint(run_dir / "best.pth")["iteration"] <= 4
        assert not [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]
    finally:
        if full == "tmpfs":
            subprocess.run(["umount", "-l", str(disk)], check=False)


def test_the_event_writer_reports_a_failure_once_and_its_thread_stays_quiet(tmp_path, capfd, monkeypatch):
    from tensorboard.compat.tensorflow_stub.io.gfile import LocalFileSystem

    seen = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_value))
    writer = SafeEventWriter(tmp_path)
    writer.add_scalar("a", 1.0, 1)
    writer.flush()

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(LocalFileSystem, "append", no_space)
    for step in range(2, 40):  # the writer thread dies on the first; later calls do nothing
        writer.add_scalar("a", float(step), step)
        time.sleep(0.001)
    writer.close()
    err = capfd.readouterr().err
    assert err.count(f"warning: cannot write TensorBoard events in {tmp_path}") == 1, err
    assert "Traceback" not in err and not seen  # the thread's exception reached no other hook
    assert writer.failure == "OSError: [Errno 28] No space left on device"

    monkeypatch.undo()
    quiet = SafeEventWriter(tmp_path / "other")  # a writer that works is unaffected
    quiet.add_scalar("b", 1.0, 1)
    quiet.close()
    assert quiet.failure is None and list((tmp_path / "other").glob("events.out.tfevents.*"))
