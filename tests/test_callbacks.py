"""Callbacks (utils/callbacks.py): their events, their state across a resume, and naming them
from a script or the command line without subclassing the Trainer."""
import signal

import pytest
import torch

import runs
from utils.callbacks import CALLBACKS, Callback, GradNorm
from utils.checkpoint import load_checkpoint
from utils.cli import parse_config
from utils.engine import TrainConfig, Trainer, run


def tiny_config(run_dir, **overrides):
    return runs.tiny_config(run_dir, **{"dataset_kwargs": {"size": 32, "length": 16}, "iters": 6, "val_every": 3,
                                        **overrides})


class Recorder(Callback):
    """Writes down every event with the iteration it came at."""

    def __init__(self):
        self.events = []

    def on_train_start(self, trainer):
        self.events.append(("start", trainer.state.iteration))

    def on_step_end(self, trainer, loss):
        assert loss.dim() == 0 and not loss.requires_grad
        self.events.append(("step", trainer.state.iteration))

    def on_validation_end(self, trainer, metrics):
        self.events.append(("validation", trainer.state.iteration, round(metrics["mean_iu"], 6)))

    def on_save(self, trainer, checkpoint):
        self.events.append(("save", checkpoint["iteration"]))

    def on_train_end(self, trainer):
        self.events.append(("end", trainer.state.iteration, trainer.stopped))


class LossSum(Callback):
    """A stateful callback: the sum of the step losses and the steps it saw."""

    name = "loss-sum"

    def __init__(self):
        self.total, self.steps = 0.0, []

    def on_step_end(self, trainer, loss):
        self.total += float(loss)
        self.steps.append(trainer.state.iteration)

    def state_dict(self):
        return {"total": self.total, "seen": len(self.steps)}

    def load_state_dict(self, state):
        self.total = state["total"]


def test_each_event_comes_once_where_it_should(tmp_path):
    recorder = Recorder()
    trainer = Trainer(tiny_config(tmp_path), callbacks=[recorder])
    trainer.fit()
    best = load_checkpoint(tmp_path / "last.pth")["best_metrics"]
    kinds = [event[0] for event in recorder.events]
    assert kinds == ["start", "step", "step", "step", "validation", "save", "step", "step", "step", "validation",
                     "save", "end"]
    assert [e[1] for e in recorder.events if e[0] in ("step", "validation", "save")] == [1, 2, 3, 3, 3, 4, 5, 6, 6, 6]
    assert recorder.events[-1] == ("end", 6, None)
    assert max(e[2] for e in recorder.events if e[0] == "validation") == round(best["mean_iu"], 6)


def test_a_stateful_callback_resumes_exactly(tmp_path, monkeypatch):
    whole = LossSum()
    Trainer(tiny_config(tmp_path / "whole"), callbacks=[whole]).fit()
    first = LossSum()
    runs.train_until_killed(Trainer, tiny_config(tmp_path / "split"), 3, monkeypatch, callbacks=[first])
    assert load_checkpoint(tmp_path / "split" / "last.pth")["callbacks"]["loss-sum"] == {"total": first.total,
                                                                                       "seen": 3}
    second = LossSum()
    resumed = Trainer(tiny_config(tmp_path / "split", resume=True), callbacks=[second])
    assert second.total == pytest.approx(first.total)  # its own state came back
    resumed.fit()
    assert second.steps == [4, 5, 6]
    assert second.total == pytest.approx(whole.total, rel=1e-6)


def test_a_stopped_run_still_ends_its_callbacks(tmp_path):
    class StopAtTwo(Callback):
        def on_step_end(self, trainer, loss):
            if trainer.state.iteration == 2:
                trainer.signals.received = signal.SIGTERM  # what the handler records

    recorder = Recorder()
    trainer = Trainer(tiny_config(tmp_path), callbacks=[StopAtTwo(), recorder])
    with pytest.raises(SystemExit) as stop:
        trainer.fit()
    assert stop.value.code == 128 + signal.SIGTERM
    kind, iteration, stopped = recorder.events[-1]
    assert (kind, iteration, stopped.code) == ("end", 2, 128 + signal.SIGTERM)
    assert ("save", 2) in recorder.events  # the stop wrote last.pth first


def test_registered_callbacks_are_named_on_the_command_line(tmp_path, monkeypatch):
    logged = {}
    monkeypatch.setattr("utils.visualize.TensorBoardLogger.scalars",
                        lambda self, values, step: logged.setdefault(step, {}).update(values))
    run(tiny_config(tmp_path, log_every=2), ["--callbacks", "grad-norm", "snapshots",
                                             "--callback-kwargs", '{"snapshots": {"every": 3}}'])
    assert sorted(p.name for p in tmp_path.glob("iter_*.pth")) == ["iter_0000003.pth", "iter_0000006.pth"]
    snapshot = load_checkpoint(tmp_path / "iter_0000003.pth")
    assert snapshot["iteration"] == 3 and set(snapshot["callbacks"]) == {"log", "grad-norm", "snapshots"}
    assert all(logged[it]["train/grad_norm"] > 0 for it in (2, 4, 6))


def test_grad_norm_is_the_global_norm_of_the_gradients(tmp_path):
    trainer = Trainer(tiny_config(tmp_path))
    callback = GradNorm()
    callback.on_train_start(trainer)
    images, targets = next(iter(trainer.train_loader))
    trainer.train_step((images, targets))
    callback.on_step_end(trainer, torch.zeros(()))
    grads = torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None])
    assert callback.total.item() == pytest.approx(grads.norm().item(), rel=1e-5)


def test_run_takes_callback_objects(tmp_path):
    recorder = Recorder()
    run(tiny_config(tmp_path, iters=2, val_every=2), [], callbacks=[recorder])
    assert [e[0] for e in recorder.events] == ["start", "step", "step", "validation", "save", "end"]


def test_bad_callbacks_fail_before_work_with_the_valid_names(tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse_config(TrainConfig(), ["--callbacks", "ema"])
    assert f"--callbacks 'ema' is not one of: {', '.join(CALLBACKS)}" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_config(TrainConfig(), ["--callbacks", "snapshots", "--callback-kwargs", '{"snapshots": {"every": 0}}'])
    assert "--callback-kwargs for snapshots: every must be a whole number >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_config(TrainConfig(), ["--callback-kwargs", '{"snapshots": {}}'])
    assert "names 'snapshots', which --callbacks does not list" in capsys.readouterr().err
    with pytest.raises(TypeError, match="must be a utils.callbacks.Callback, got function"):
        Trainer(tiny_config(tmp_path), callbacks=[lambda trainer: None])
    assert not any(tmp_path.iterdir())  # refused before the run folder was touched
