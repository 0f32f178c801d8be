"""Callbacks: what is done at fixed points of a run, added without subclassing the Trainer.

A callback subclasses `Callback` and overrides the events it needs; each gets the trainer
(its `cfg`, `state`, `model`, `optimizer`, `logger`, `device`, `is_main`, `run_dir`):

    on_train_start(trainer)              before the first step of this process's run
    on_step_end(trainer, loss)           after every optimiser step; `loss` is a device tensor
                                         (reading it, `.item()`, waits for the GPU)
    on_validation_end(trainer, metrics)  after each validation, before the checkpoint is written
    on_save(trainer, checkpoint)         on the main process, just before `checkpoint` (the dict
                                         about to be written as last.pth) is written
    on_train_end(trainer)                once at the end, finished or stopped early
                                         (`trainer.stopped` is then the StopRun)

`state_dict()` / `load_state_dict(state)` carry a callback's own state across a resume
(tensors and plain values; it is saved in every checkpoint under "callbacks", keyed by the
callback's `name`), so that a stateful callback resumes exactly. Under torchrun the main
process writes checkpoints, so every process gets back the main process's state.

Events run in the list's order (the training log first), `on_train_end` in reverse, so
that the training log prints the run's last line.

A script passes objects, `run(cfg, callbacks=[MyCallback()])`; a registered one is named on
the command line, `--callbacks grad-norm snapshots --callback-kwargs '{"snapshots": {"every": 1000}}'`.
A new registered callback is one class plus one line in `CALLBACKS`.
"""
from __future__ import annotations

import torch

from .checkpoint import save_checkpoint


class Callback:
    """Does nothing at every event; subclasses override what they need."""

    name: str | None = None  # the key of its state in checkpoints (default: the class name)

    def on_train_start(self, trainer) -> None:
        pass

    def on_step_end(self, trainer, loss: torch.Tensor) -> None:
        pass

    def on_validation_end(self, trainer, metrics: dict) -> None:
        pass

    def on_save(self, trainer, checkpoint: dict) -> None:
        pass

    def on_train_end(self, trainer) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class CallbackList:
    """The run's callbacks in order, called together; their states keyed by name."""

    EVENTS = ("on_train_start", "on_step_end", "on_validation_end", "on_save", "on_train_end")

    def __init__(self, callbacks) -> None:
        self.callbacks = list(callbacks)
        self.keys: list[str] = []
        for callback in self.callbacks:
            if not isinstance(callback, Callback):
                raise TypeError(f"a callback must be a utils.callbacks.Callback, got {type(callback).__name__}")
            key = callback.name or type(callback).__name__
            self.keys.append(key if key not in self.keys else f"{key}#{self.keys.count(key) + 1}")

    def __iter__(self):
        return iter(self.callbacks)

    def __getattr__(self, event: str):
        if event not in CallbackList.EVENTS:
            raise AttributeError(event)

        # ended in the reverse order of their start (see the module docstring)
        order = self.callbacks[::-1] if event == "on_train_end" else self.callbacks

        def call(*args) -> None:
            for callback in order:
                getattr(callback, event)(*args)
        return call

    def state_dict(self) -> dict:
        return {key: callback.state_dict() for key, callback in zip(self.keys, self.callbacks)}

    def load_state_dict(self, states: dict) -> list[str]:
        """Restore each callback's saved state; returns the keys of the stateful ones the checkpoint
        did not know (they start afresh)."""
        fresh = []
        for key, callback in zip(self.keys, self.callbacks):
            if key in states:
                callback.load_state_dict(states[key])
            elif callback.state_dict():
                fresh.append(key)
        return fresh


# ---------------------------------------------------------------- registered callbacks

class GradNorm(Callback):
    """Logs the global L2 norm of the gradients after each step's backward pass, as its mean over
    each log interval, to TensorBoard as train/grad_norm (with fp16 AMP: of the scaled gradients)."""

    name = "grad-norm"

    def on_train_start(self, trainer) -> None:
        self.total, self.steps = torch.zeros((), device=trainer.device), 0

    def on_step_end(self, trainer, loss: torch.Tensor) -> None:
        grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
        if grads:
            self.total += torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
            self.steps += 1
        if self.steps and trainer.log_due():
            mean = (self.total / self.steps).item()  # the one sync
            trainer.logger.scalars({"train/grad_norm": mean}, trainer.state.iteration)
            self.total.zero_()
            self.steps = 0


class Snapshots(Callback):
    """Keeps a copy of the checkpoint every `every` iterations as iter_NNNNNNN.pth beside last.pth
    (last.pth is overwritten at each validation; these stay)."""

    name = "snapshots"

    def __init__(self, every: int = 1000) -> None:
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a whole number >= 1, got {every}")
        self.every = every

    def on_save(self, trainer, checkpoint: dict) -> None:
        it = checkpoint["iteration"]
        if it % self.every == 0:
            save_checkpoint(checkpoint, trainer.run_dir / f"iter_{it:07d}.pth")


CALLBACKS: dict[str, type[Callback]] = {
    "grad-norm": GradNorm,
    "snapshots": Snapshots,
}


def build_callbacks(names, kwargs: dict) -> list[Callback]:
    """The registered callbacks `names` with their options `kwargs[name]`; bad names or options
    raise ValueError naming them."""
    unknown = [name for name in names if name not in CALLBACKS]
    if unknown:
        raise ValueError(f"--callbacks {unknown[0]!r} is not one of: {', '.join(CALLBACKS)}")
    stray = [name for name in kwargs if name not in names]
    if stray:
        raise ValueError(f"--callback-kwargs names {stray[0]!r}, which --callbacks does not list")
    built = []
    for name in names:
        options = kwargs.get(name, {})
        if not isinstance(options, dict):
            raise ValueError(f"--callback-kwargs: the options of {name} must be a JSON object, got {options!r}")
        try:
            built.append(CALLBACKS[name](**options))
        except (TypeError, ValueError) as err:
            raise ValueError(f"--callback-kwargs for {name}: {err}") from None
    return built

