"""The one training engine: `TrainConfig` and `run(cfg)`.

A training script fills a `TrainConfig` with its paper's hyperparameters and
calls `run(cfg)`. Every field can be overridden from the command line
(`--iters 200 --batch-size 4 --device cpu`), and bad values stop the script
before any work starts. The same script runs on a CPU, one GPU, or many GPUs
under torchrun.

The engine's parts, one job each:
    utils/train_config.py  TrainConfig: every hyperparameter, its flag and its checks
    utils/trainer.py       Trainer: builds a run and trains it (the loop)
    utils/run_state.py     RunState: where a run stands; StopRun
    utils/run_setup.py     the run folder, model placement, --init-from
    utils/checkpoint.py    the checkpoint layout, its one writer, migration of older layouts
    utils/losses.py        the loss registry (--loss, --loss-kwargs)
    utils/callbacks.py     callbacks (--callbacks, run(cfg, callbacks=[...])); training_log.py: the log

A script changes the loss by name (`loss="ce+dice"`), adds work at fixed points
of the run with callbacks (`run(cfg, callbacks=[...])`), and changes any other
part by subclassing `Trainer`, overriding the one builder it needs, and calling
`run(cfg, trainer=ItsTrainer)`; see docs/extending.md.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from torch.distributed.elastic.multiprocessing.errors import record

import datasets

from . import runtime
from .callbacks import Callback
from .checkpoint import CheckpointError, CheckpointWriteError
from .faults import EXIT_WRITE_FAILED, WriteFailed
from .cli import parse_config
from .run_state import RunState, StopRun
from .train_config import TrainConfig
from .trainer import Trainer

__all__ = ["TrainConfig", "Trainer", "Callback", "RunState", "StopRun", "run", "parse_config"]


def run(cfg: TrainConfig, argv: Sequence[str] | None = None, trainer: type[Trainer] | None = None,
        callbacks: Sequence[Callback] = ()) -> dict:
    """Apply command-line overrides to `cfg`, train with `trainer` (a `Trainer` subclass, or
    `Trainer` itself) and `callbacks` (utils/callbacks.py, run after those --callbacks names),
    and return the best validation metrics."""
    script = Path(sys.argv[0]).resolve().parent.name if argv is None else "run"
    cfg = parse_config(cfg, argv, description=sys.modules["__main__"].__doc__ if argv is None else None)
    trainer_class = trainer or Trainer
    options = {"callbacks": list(callbacks)} if callbacks else {}  # a subclass may predate the argument

    def train() -> dict:
        return trainer_class(cfg, default_name=script, **options).fit()

    if runtime.launched_by_torchrun():
        # A rank that raises exits non-zero; torchrun then stops the other ranks (which
        # would otherwise wait in a collective) and, thanks to @record, prints this
        # rank's traceback in its failure summary.
        train = record(train)
    try:
        return train()
    except (WriteFailed, CheckpointWriteError) as err:  # the run folder cannot be written: a status of its own
        print(f"error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_WRITE_FAILED) from None
    except (CheckpointError, datasets.DatasetError) as err:
        raise SystemExit(f"error: {err}") from None
