"""DDP on the CPU: gloo, 2 processes started by torchrun (tests/distributed_worker.py).

Each torchrun launch takes a few seconds to start two Python processes;
`--standalone` lets the rendezvous pick a free port.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import distributed_worker as worker
from utils import engine
from utils.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "distributed_worker.py"

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or
                                not torch.distributed.is_backend_available("gloo"),
                                reason="needs torch.distributed with gloo")


def launch(args, nproc: int = 2, timeout: float = 120, torchrun=(), wait: bool = True):
    """torchrun (with the extra options `torchrun`) on the worker: its CompletedProcess, or with
    wait=False the running Popen (text pipes)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               *torchrun, str(WORKER), *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if not wait:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


def check(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]


def train_flags(run_dir, *flags) -> list[str]:
    return ["--run-dir", str(run_dir), "--dataset-kwargs", '{"size": 32, "length": 16}', *flags]


def test_one_step_on_two_processes_equals_one_process_on_the_double_batch(tmp_path):
    # BatchNorm in eval mode: normalisation does not depend on the batch split.
    check(launch(["step", tmp_path]))
    two = torch.load(tmp_path / "step.pth", weights_only=True)
    model = worker.tiny_bn_model()
    worker.sgd_step(model, *worker.tiny_batch(4))
    for name, value in model.state_dict().items():
        torch.testing.assert_close(two[name], value, rtol=1e-5, atol=1e-6, msg=name)
    assert any(not torch.equal(value, worker.tiny_bn_model().state_dict()[name])
               for name, value in two.items())  # the step did change the weights


def test_engine_step_on_two_processes_equals_one_process_on_the_double_batch(tmp_path):
    # The whole engine path: torchrun detection, sharded sampler, DDP gradient averaging.
    # No BatchNorm (on the CPU it cannot be synchronised); every pixel is labelled, so the
    # mean of the two per-process losses is the loss over the double batch.
    common = ["--model-kwargs", '{"width": 4, "depth": 2, "batch_norm": false}', "--optimizer", "sgd",
              "--lr", "0.1", "--iters", "1", "--val-every", "1"]
    check(launch(["train", tmp_path, *train_flags(tmp_path / "two", *common, "--batch-size", "2")]))
    one = engine.Trainer(engine.parse_config(engine.TrainConfig(), worker.TINY_FLAGS + train_flags(
        tmp_path / "one", *common, "--batch-size", "4")))
    one.fit()
    two = load_checkpoint(tmp_path / "two" / "last.pth")
    assert two["world_size"] == 2 and two["iteration"] == 1
    for name, value in one.model.state_dict().items():
        torch.testing.assert_close(two["state_dict"][name], value, rtol=1e-5, atol=1e-6, msg=name)


def test_all_reduced_metrics_equal_the_single_process_ones(tmp_path):
    check(launch(["evaluate", tmp_path]))
    single = worker.evaluation_results(0, 1)
    for rank in (0, 1):
        reduced = torch.load(tmp_path / f"eval{rank}.pth", weights_only=True)
        assert torch.equal(reduced["matrix"], single["matrix"])
        assert torch.equal(reduced["scores"], single["scores"])
        # 7 validation images over 2 ranks: each is counted exactly once.
        assert json.dumps(reduced["metrics"]) == json.dumps(single["metrics"])  # as text: NaN == NaN


def test_a_checkpoint_written_by_two_processes_resumes_in_one(tmp_path):
    run_dir = tmp_path / "run"
    check(launch(["train", tmp_path, "--stop-at", "3", *train_flags(run_dir, "--batch-size", "2", "--iters", "6",
                                                                     "--val-every", "3")]))
    reports = [(tmp_path / f"rank{r}.json").read_text() for r in (0, 1)]
    assert reports[0] == reports[1]  # every rank reports the same figures (as text: NaN == NaN)
    assert "mean_iu" in json.loads(reports[0])
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1  # logging from rank 0 only
    state = load_checkpoint(run_dir / "last.pth")
    assert state["world_size"] == 2 and state["iteration"] == 3
    # 3 steps of 2 processes x 2 images: the first 12 images of epoch 0's permutation.
    assert state["data_position"] == {"epoch": 0, "samples": 12}

    def resumed(batch_size: int) -> engine.Trainer:
        cfg = engine.parse_config(engine.TrainConfig(), worker.TINY_FLAGS + train_flags(
            run_dir, "--batch-size", str(batch_size), "--iters", "6", "--val-every", "3", "--resume"))
        return engine.Trainer(cfg)

    # Batch 8 on one process: one whole global batch (8 images) fits in the 12 consumed,
    # so it starts at batch 1 of epoch 0 and sees images 8..11 again, skipping none.
    assert resumed(8)._data_position() == (0, 1)
    trainer = resumed(4)  # the same global batch: exactly where the two processes stopped
    assert trainer.state.iteration == 3 and trainer._data_position() == (0, 3)
    torch.testing.assert_close(trainer.model.state_dict(), state["state_dict"])
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * (1 - 3 / 6) ** 0.9)
    trainer.fit()
    final = load_checkpoint(run_dir / "last.pth")
    assert final["iteration"] == 6 and final["world_size"] == 1
    assert final["data_position"] == {"epoch": 1, "samples": 8}


def test_a_failing_rank_brings_the_job_down_with_its_error(tmp_path):
    # Rank 1 raises; rank 0 goes on into validation, where it would wait forever
    # for rank 1 in the all-reduce unless the job is brought down.
    start = time.monotonic()
    result = launch(["train", tmp_path, "--fail-rank", "1",
                     *train_flags(tmp_path / "run", "--batch-size", "2", "--iters", "2", "--val-every", "1")],
                    timeout=150)
    elapsed = time.monotonic() - start
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "rank 1 failed on purpose" in output
    assert elapsed < 90, f"the job took {elapsed:.0f} s to come down"
