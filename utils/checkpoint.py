"""Checkpoints: plain dicts, written atomically, read with weights_only=True.

A checkpoint holds everything needed to rebuild the model with no other
input (model name and options, class count, data set, class names and
palette) and to resume training exactly (optimiser, schedule, scaler,
iteration, best score, RNG states, config).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from torch import nn

FORMAT = "semseg-checkpoint-v1"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, or not one of ours; the message says which."""


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """Write `state` to `path` atomically: temp file in the same folder, fsync, rename.

    A crash at any moment leaves either the previous file or the new one,
    never a half-written file under `path`.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint safely (no code runs on load) and check that it is one of ours."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise CheckpointError(f"cannot load checkpoint {path} safely (weights_only=True): {err}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path} is not a checkpoint of this repository (format {found!r}, "
                              f"expected {FORMAT!r})")
    return state


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel and torch.compile wrappers."""
    model = getattr(model, "_orig_mod", model)
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def model_from_checkpoint(state: dict) -> nn.Module:
    """Rebuild the model a checkpoint describes and load its weights strictly."""
    import models

    model = models.build_model(state["model"], state["num_classes"], pretrained=False, **state["model_kwargs"])
    try:
        model.load_state_dict(state["state_dict"], strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint weights do not fit model {state['model']!r}: {err}") from None
    return model
