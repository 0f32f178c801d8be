"""Scripts change what the engine builds by subclassing Trainer (utils/trainer.py), one
builder at a time; the loop, resume and checkpoints keep working (docs/extending.md)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from tools.fake_data import make
from utils.checkpoint import load_checkpoint
import runs
from utils.engine import Trainer, run

ROOT = Path(__file__).resolve().parents[1]
DICE_SCRIPT = ROOT / "train" / "isbi-u-net-dice" / "train.py"


def tiny_config(run_dir, **overrides):
    return runs.tiny_config(run_dir, **{"dataset_kwargs": {"size": 32, "length": 16}, "iters": 6, "val_every": 3,
                                        **overrides})


class CountingLoss(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, outputs, targets, pixel_weights=None):
        self.calls += 1
        return self.inner(outputs, targets, pixel_weights) * 2


class Customised(Trainer):
    """A loss, parameter groups, an optimiser, a per-step hook and state kept across a resume."""

    def build_loss(self):
        return CountingLoss(super().build_loss())

    def param_groups(self, model):
        classifier = [p for n, p in model.named_parameters() if n.startswith("classifier.")]
        rest = [p for n, p in model.named_parameters() if not n.startswith("classifier.")]
        return [{"params": rest}, {"params": classifier, "lr": self.cfg.lr * 3}]

    def build_optimizer(self, groups):
        return torch.optim.SGD(groups, lr=self.cfg.lr, momentum=0.5)

    def after_step(self, loss):
        self.steps_seen = getattr(self, "steps_seen", []) + [self.state.iteration]
        self.loss_sum = getattr(self, "loss_sum", 0.0) + float(loss)

    def extra_state(self):
        return {"loss_sum": getattr(self, "loss_sum", 0.0)}

    def load_extra_state(self, state):
        self.loss_sum = state["loss_sum"]


def test_each_builder_and_the_hook_are_used(tmp_path):
    trainer = Customised(tiny_config(tmp_path))
    assert isinstance(trainer.criterion, CountingLoss) and isinstance(trainer.optimizer, torch.optim.SGD)
    assert [g["lr"] for g in trainer.optimizer.param_groups] == pytest.approx([0.01, 0.03])
    trainer.fit()
    assert trainer.criterion.calls == 6 and trainer.steps_seen == [1, 2, 3, 4, 5, 6]
    # the poly schedule scaled both groups from their own base LR
    assert [g["lr"] for g in trainer.optimizer.param_groups] == pytest.approx([0.0, 0.0])
    state = load_checkpoint(tmp_path / "last.pth")
    assert state["extra"]["loss_sum"] == pytest.approx(trainer.loss_sum)


def test_a_customised_run_resumes_exactly(tmp_path, monkeypatch):
    whole = Customised(tiny_config(tmp_path / "whole"))
    whole.fit()
    runs.train_until_killed(Customised, tiny_config(tmp_path / "split"), 3, monkeypatch)
    resumed = Customised(tiny_config(tmp_path / "split", resume=True))
    assert resumed.state.iteration == 3 and resumed.loss_sum > 0  # the subclass's own state came back
    resumed.fit()
    assert resumed.steps_seen == [4, 5, 6]
    assert resumed.loss_sum == pytest.approx(whole.loss_sum, rel=1e-6)
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_run_takes_the_trainer_class(tmp_path):
    metrics = run(tiny_config(tmp_path, iters=2, val_every=2), argv=[], trainer=Customised)
    assert "mean_iu" in metrics and load_checkpoint(tmp_path / "last.pth")["extra"]["loss_sum"] > 0


class Weighted(Trainer):
    """Sets what its builder needs after super().__init__(): the parts are built afterwards."""

    def __init__(self, cfg, factor: float = 3.0, **kwargs):
        super().__init__(cfg, **kwargs)
        self.factor = factor

    def build_loss(self):
        inner, factor = super().build_loss(), self.factor
        return ScaledLoss(inner, factor)


class ScaledLoss(nn.Module):
    def __init__(self, inner, factor):
        super().__init__()
        self.inner, self.factor = inner, factor

    def forward(self, outputs, targets, pixel_weights=None):
        return self.factor * self.inner(outputs, targets, pixel_weights)


def test_a_subclass_sets_its_attributes_in_any_order_and_overrides_one_builder(tmp_path):
    trainer = Weighted(tiny_config(tmp_path), factor=5.0)
    assert isinstance(trainer.criterion, ScaledLoss) and trainer.criterion.factor == 5.0
    outputs = {"out": torch.randn(1, 4, 8, 8)}
    targets = torch.randint(0, 4, (1, 8, 8))
    assert trainer.criterion(outputs, targets).item() == pytest.approx(
        5.0 * trainer.criterion.inner(outputs, targets).item())


def test_the_dice_example_script_trains_and_resumes(tmp_path):
    data = make("isbi", tmp_path, size=32, n=4)
    common = [sys.executable, str(DICE_SCRIPT), "--model-kwargs", '{"width": 4, "depth": 2}', "--crop-size", "32",
              "--batch-size", "2", "--val-tile", "32", "--val-stride", "32", "--val-mirror-margin", "4",
              "--val-every", "2", "--workers", "0", "--device", "cpu", "--no-progress", "--data-root", str(data),
              "--run-dir", str(tmp_path / "run")]
    first = subprocess.run(common + ["--iters", "2"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert first.returncode == 0, first.stderr[-2000:]
    second = subprocess.run(common + ["--iters", "4", "--resume"], capture_output=True, text=True, timeout=300,
                            cwd=ROOT)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "resumed from" in second.stdout and "best mean_iu" in second.stdout.splitlines()[-1]
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["config"]["iters"] == 2 and record["resumes"][0]["changed"] == {"iters": 4, "resume": True}
    assert load_checkpoint(tmp_path / "run" / "last.pth")["iteration"] == 4


class EarlyAccess(Trainer):
    """Written for the time when Trainer.__init__ built the parts: reads one in its own __init__."""

    def __init__(self, cfg, **kwargs):
        super().__init__(cfg, **kwargs)
        self.initial = [p.detach().clone() for p in self.model.parameters()]


def test_a_subclass_that_reads_a_part_in_its_init_still_works(tmp_path):
    trainer = EarlyAccess(tiny_config(tmp_path, iters=2, val_every=2))
    assert len(trainer.initial) == len(list(trainer.model.parameters())) and trainer.state.iteration == 0
    trainer.fit()
    assert any(not torch.equal(a, b) for a, b in zip(trainer.initial, trainer.model.parameters()))
    with pytest.raises(AttributeError, match="has no attribute 'nonexistent'"):
        trainer.nonexistent
