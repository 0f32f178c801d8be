"""What a run does with the checkpoints it finds in its folder: continue, start afresh, or refuse.

`--resume` continues from last.pth and fails without it. `--resume auto` continues
from last.pth when there is one and starts afresh when the folder holds no
checkpoint, so that one command line serves the first start of a job and every
restart (torchrun's elastic restarts, a requeued batch job). Without either, a
folder that holds checkpoints is refused unless `--overwrite` sets its files
aside. Rank 0 decides (it holds the folder's lock, see run_lock.py) and every
other process follows its decision, so all ranks restart at the same place.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from . import runtime
from .checkpoint import CheckpointError, load_checkpoint
from .run_lock import LOCK_NAME


def decide_resume(run_dir: Path, resume: bool | str, overwrite: bool, model: str, dataset: str) -> bool:
    """On rank 0, with the folder locked: True to continue from run_dir/last.pth, False to start
    afresh (after setting earlier files aside where that is asked for); SystemExit or
    CheckpointError to refuse, with the reason."""
    last, best = run_dir / "last.pth", run_dir / "best.pth"
    if resume is True:
        if not last.is_file():
            raise SystemExit(f"--resume: no last.pth in {run_dir} to continue from (--resume auto starts "
                             f"afresh when there is none)")
        return True
    if resume == "auto" and last.is_file():
        return True  # whose checkpoint it is, the resume itself checks (model, classes, weights)
    if not (last.exists() or best.exists()):
        return False
    if resume == "auto":
        # best.pth without last.pth: a run stopped during its first save (best.pth is written
        # first), or a folder of another run. Start afresh only if it is this configuration's.
        check_same_run(best, model, dataset)
        moved = set_aside(run_dir)
        print(f"note: {run_dir} holds best.pth but no last.pth to continue from; starting afresh, the "
              f"earlier files are kept in {moved}", flush=True)
        return False
    if not overwrite:
        raise SystemExit(f"{run_dir} already holds checkpoints of an earlier run; pass --resume to continue it "
                         f"(--resume auto: continue if it can, else start afresh), --overwrite to start afresh "
                         f"(the old files are kept in a subfolder), or --run-dir for a new folder")
    set_aside(run_dir)
    return False


def check_same_run(path: Path, model: str, dataset: str) -> None:
    """CheckpointError unless the checkpoint at `path` trains `model` on `dataset`."""
    saved = load_checkpoint(path, map_location="cpu")
    if (saved.get("model"), saved.get("dataset")) != (model, dataset):
        raise CheckpointError(f"--resume auto: {path} belongs to another run ({saved.get('model')!r} on "
                              f"{saved.get('dataset')!r}; this run trains {model!r} on {dataset!r}); pass "
                              f"--run-dir for a new folder, or --overwrite to set its files aside")


def set_aside(run_dir: Path) -> Path:
    """Move every file of `run_dir` but the lock into a new replaced-<time> subfolder; return it."""
    stamp = time.strftime("replaced-%Y%m%d-%H%M%S")
    backup, n = run_dir / stamp, 1
    while backup.exists():  # twice in one second: never rename onto an earlier backup's files
        backup, n = run_dir / f"{stamp}-{n}", n + 1
    backup.mkdir()
    for item in run_dir.iterdir():
        if item.is_file() and item.name != LOCK_NAME:
            item.rename(backup / item.name)
    return backup


def agree(decision: bool, device: torch.device) -> bool:
    """Rank 0's decision on every rank (a collective: every rank calls it; alone, no communication)."""
    return bool(runtime.max_over_ranks([int(decision) if runtime.is_main() else 0], device)[0])
