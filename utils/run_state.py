"""Where a run stands (`RunState`), how it stops early (`StopRun`), and how it continues after
a resume (`resume`, `data_position`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import runtime
from .checkpoint import CheckpointError, load_checkpoint, unwrap
from .runtime import seed_everything, set_rng_state


@dataclass
class RunState:
    """Where a run stands. All of it is written into every checkpoint and read back on resume."""
    iteration: int = 0
    best_score: float = -1.0
    best_iteration: int = 0
    best_metrics: dict = field(default_factory=dict)
    epoch: int = 0
    epoch_samples: int = 0  # images of this epoch's permutation consumed by all ranks together
    validation_pending: bool = False  # a signal stopped the run before this iteration's validation
    saved_iteration: int = -1  # the iteration last.pth holds (not saved: it is the checkpoint's own)

    def checkpoint_fields(self, validation_pending: bool) -> dict:
        """This state's share of a checkpoint's training keys (utils.checkpoint.TRAINING_KEYS)."""
        return {"best_score": self.best_score, "best_iteration": self.best_iteration,
                "best_metrics": self.best_metrics, "validation_pending": validation_pending,
                "data_position": {"epoch": self.epoch, "samples": self.epoch_samples}}

    @classmethod
    def from_checkpoint(cls, saved: dict) -> "RunState":
        return cls(iteration=saved["iteration"], best_score=saved["best_score"],
                   best_iteration=saved["best_iteration"], best_metrics=saved["best_metrics"],
                   validation_pending=saved["validation_pending"], saved_iteration=saved["iteration"])


class StopRun(Exception):
    """Ends the run early with an exit status and a message (a stop signal, non-finite steps or
    weights). Raised where the fault is seen; `Trainer.fit` closes up and exits with `code`."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def data_position(iteration: int, resumed_position: dict | None, global_batch: int,
                  batches_per_epoch: int) -> tuple[int, int]:
    """(epoch, first batch) at which the data order continues.

    A checkpoint records its epoch and how many images of that epoch's
    permutation all ranks had consumed together (ranks take interleaved
    shards, so these are exactly the permutation's first images). The
    run continues in that epoch after the largest whole number of its own
    global batches (batch size x processes) that fits: with the same world
    size and batch size this is exact; otherwise at most one global batch
    is seen twice and no image is skipped. Checkpoints without a recorded
    position (and fresh runs) continue from the iteration count.
    """
    if resumed_position is None:
        return divmod(iteration, batches_per_epoch)
    samples = resumed_position["samples"]
    return resumed_position["epoch"], min(samples // global_batch, batches_per_epoch)


def resume(trainer, path: Path) -> None:
    """Load the run's state from checkpoint `path` into `trainer`'s parts (--resume); a checkpoint of
    another model or class count is a CheckpointError naming both."""
    # On the CPU: RNG states must stay there, and load_state_dict copies the rest to the device.
    saved = load_checkpoint(path, map_location="cpu")
    if saved.get("model") != trainer.cfg.model:
        raise CheckpointError(f"--resume: {path} holds model {saved.get('model')!r}, but this run trains "
                              f"{trainer.cfg.model!r}")
    if saved.get("num_classes") != trainer.num_classes:
        raise CheckpointError(f"--resume: {path} has {saved.get('num_classes')} classes, but data set "
                              f"{trainer.cfg.dataset!r} has {trainer.num_classes}")
    try:
        unwrap(trainer.model).load_state_dict(saved["state_dict"])
        trainer.optimizer.load_state_dict(saved["optimizer"])
    except (RuntimeError, ValueError) as err:
        raise CheckpointError(f"--resume: {path} does not fit this run's {trainer.cfg.model!r} (options "
                              f"{trainer.model_kwargs}; the checkpoint's: {saved.get('model_kwargs')}): "
                              f"{str(err).splitlines()[0]}") from None
    trainer.scheduler.load_state_dict(saved["scheduler"])
    trainer.scaler.load_state_dict(saved["scaler"])
    trainer.guard.load_state(saved["nonfinite_run"])
    trainer.load_extra_state(saved["extra"])
    fresh = trainer.callbacks.load_state_dict(saved["callbacks"])
    if fresh and trainer.is_main:
        print(f"note: the checkpoint holds no state of callback(s) {', '.join(fresh)}; they start afresh")
    trainer.state = RunState.from_checkpoint(saved)
    trainer.resumed_position = saved["data_position"]
    if runtime.is_main():
        set_rng_state(saved["rng"])  # rank 0's; the checkpoint holds no other
    else:
        seed_everything(trainer.cfg.seed + runtime.rank() + 1_000_003 * trainer.state.iteration)
    saved_world, saved_batch = saved["world_size"], saved["config"]["batch_size"]
    if trainer.is_main and (saved_world, saved_batch) != (runtime.world_size(), trainer.cfg.batch_size):
        print(f"note: the checkpoint was written by {saved_world} process(es) at batch size {saved_batch} "
              f"per process; continuing with {runtime.world_size()} x {trainer.cfg.batch_size} (iteration, "
              f"LR schedule and epoch position carry over)")
    if trainer.is_main:
        print(f"resumed from {path} at iteration {trainer.state.iteration}")
