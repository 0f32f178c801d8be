"""The benchmarks time the engine's own training step (benchmarks/child.py's engine_trainer)."""
import json
import subprocess
import sys
from pathlib import Path

import torch

from benchmarks import child

ROOT = Path(__file__).resolve().parents[1]


def test_engine_trainer_step_updates_weights_and_counts_the_iteration(tmp_path):
    trainer = child.engine_trainer(model_name="u_net", model_kwargs={"width": 4, "depth": 2}, classes=21, crop=32,
                                   batch=2, device="cpu", run_dir=str(tmp_path))
    try:
        assert trainer.model.classifier.out_channels == 21  # the benchmark's class count, not the data set's 4
        before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
        loss = trainer.train_step((torch.randn(2, 3, 32, 32), torch.randint(0, 21, (2, 32, 32))))
    finally:
        trainer.logger.close()
    assert trainer.state.iteration == 1
    assert torch.isfinite(loss) and not loss.requires_grad
    unchanged = [name for name, p in trainer.model.named_parameters() if torch.equal(p, before[name])]
    assert not unchanged


def test_train_speed_takes_model_options(tmp_path):
    # The CPU recipe's table (docs/camvid.md) times a width-16 U-Net: the options
    # must reach the measured network: FLOPs grow with the square of the width.
    def gflops(kwargs: str) -> float:
        done = subprocess.run([sys.executable, str(ROOT / "benchmarks/train_speed.py"), "--device", "cpu",
                               "--models", "u_net", "--model-kwargs", kwargs, "--crop", "128", "--batch", "1",
                               "--steps", "1", "--warmup", "0", "--flags", "fp32", "--no-torchvision"],
                              capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert done.returncode == 0, done.stderr[-2000:]
        assert f"model options {json.loads(kwargs)}" in done.stdout
        row = next(line for line in done.stdout.splitlines() if line.startswith("| u_net"))
        return float(row.split("|")[7])

    assert gflops('{"width": 8, "depth": 2}') < gflops('{"width": 16, "depth": 2}') / 3
