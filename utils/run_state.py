"""Where a run stands (`RunState`), how it stops early (`StopRun`), and where its data order
continues after a resume."""
from __future__ import annotations

from dataclasses import dataclass, field


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
