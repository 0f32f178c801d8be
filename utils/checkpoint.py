"""Checkpoints: plain dicts, written atomically, read with weights_only=True.

A checkpoint holds everything needed to rebuild the model with no other
input (model name and options, class count, data set, class names and
palette, input normalisation) and, when training wrote it, to resume
exactly (optimiser, schedule, scaler, iteration, best score, RNG states,
callbacks' state, config), and says what produced it (`provenance`: git
commit, dirty tree, library versions). Beside the checkpoints, each run
folder holds `config.json` (`write_run_config`).

The layout is versioned (`VERSION`). `make_checkpoint` is its one writer
(the engine and tools/convert_checkpoint.py both use it), and
`load_checkpoint` passes every file through `migrate`, which reads each
older layout this project wrote, so no other code needs fallbacks.
"""
from __future__ import annotations

import json
import os
import pickle
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

FORMAT = "semseg-checkpoint"
VERSION = 4
# Version 1 (November-December 2026) named its version in the format and recorded less;
# versions 2 and 3 (December 2026) lacked validation settings: see `migrate`.
FORMAT_V1 = "semseg-checkpoint-v1"

# What training adds, so that a run resumes exactly; a converted checkpoint has none of it.
TRAINING_KEYS = ("optimizer", "scheduler", "scaler", "best_score", "best_iteration", "best_metrics",
                 "world_size", "data_position", "validation_pending", "nonfinite_run", "rng", "extra",
                 "callbacks")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, or not one of ours; the message says which."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint or run record could not be written (a full disk, lost permissions); the
    file it was to replace is unchanged."""


def make_checkpoint(*, model: str, model_kwargs: dict, num_classes: int, input_norm: dict, dataset: str,
                    dataset_kwargs: dict, classes: list, palette: list, state_dict: dict, config: dict,
                    iteration: int = 0, metrics: dict | None = None, provenance: dict | None = None,
                    training: dict | None = None, converted_from: dict | None = None) -> dict:
    """A checkpoint of the current layout. `training` holds exactly `TRAINING_KEYS` (the engine's
    checkpoints) or is None (a converted one, which eval.py and predict.py take alike)."""
    if training is not None and set(training) != set(TRAINING_KEYS):
        raise ValueError(f"training state: missing {sorted(set(TRAINING_KEYS) - set(training))}, "
                         f"unknown {sorted(set(training) - set(TRAINING_KEYS))}")
    state = {"format": FORMAT, "version": VERSION, "model": model, "model_kwargs": dict(model_kwargs),
             "num_classes": num_classes, "input_norm": input_norm, "dataset": dataset,
             "dataset_kwargs": dict(dataset_kwargs), "classes": list(classes),
             "palette": [list(c) for c in palette], "state_dict": state_dict, "iteration": iteration,
             "metrics": metrics or {}, "config": config, "provenance": provenance or {}}
    if converted_from is not None:
        state["converted_from"] = converted_from
    return {**state, **(training or {})}


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """Write `state` to `path` atomically: temp file in the same folder, fsync, rename.

    A crash at any moment leaves either the previous file or the new one,
    never a half-written file under `path`.
    """
    _write_atomically(path, lambda f: torch.save({"format": FORMAT, "version": VERSION, **state}, f))


def _write_atomically(path: str | os.PathLike, write, what: str = "checkpoint") -> None:
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, OSError):  # a full disk, a vanished folder, lost permissions
            kept = "the previous file is unchanged" if path.exists() else "nothing was written"
            raise CheckpointWriteError(f"cannot write {what} {path} ({kept}): {err}") from err
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
    except pickle.UnpicklingError as err:
        # weights_only=True refuses anything but tensors and plain containers: a pickled
        # object or function could run code while loading. Never retry without it.
        reason = next((line.strip() for line in str(err).splitlines() if "Unsupported global" in line),
                      str(err).splitlines()[0] if str(err) else type(err).__name__)
        raise CheckpointError(f"refusing to load {path}: it holds Python objects other than tensors and "
                              f"plain containers, which could run code on load (weights_only=True: "
                              f"{reason})") from None
    except Exception as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: the file is truncated, corrupt or not a "
                              f"PyTorch file ({type(err).__name__}: {first})") from None
    if not isinstance(state, dict) or state.get("format") not in (FORMAT, FORMAT_V1):
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path} is not a checkpoint of this repository (format {found!r}, "
                              f"expected {FORMAT!r})")
    return migrate(state, path)


def migrate(state: dict, path: str | os.PathLike = "checkpoint") -> dict:
    """`state` in the current layout, whichever layout of this project wrote it.

    Version 1 lacked, in its earlier files: `input_norm` (every network then took
    ImageNet's), `provenance`, `extra`, `data_position`, `world_size`,
    `nonfinite_run`, `validation_pending`, `callbacks`, and the config fields
    `val_protocol`, `val_long_side`, `val_mirror_margin`, `loss`, `loss_kwargs`,
    `callbacks`, `callback_kwargs`; and its backbones stored
    their weights as `stages.i[.j].*` instead of torchvision's module names.
    Versions 1 and 2 lacked the config fields `val_tile_batch`, `val_scales` and
    `val_flip` (validation ran 4 tiles per pass, at one scale, unflipped).
    Versions 1 to 3 lacked `val_threshold` (two-class predictions were the argmax: 0.5).
    Each missing value is the one its writer behaved as.
    """
    from models.input_norm import IMAGENET

    version = state.get("version", 1 if state.get("format") == FORMAT_V1 else None)
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(f"{path} has checkpoint layout version {version!r}; this code reads versions "
                              f"1..{VERSION} (a newer checkout of the repository wrote it?)")
    if version == VERSION:
        return state
    state = dict(state, format=FORMAT, version=VERSION)
    state["config"] = {"val_threshold": 0.5, **state.get("config", {})}
    if version >= 3:
        return state
    state["config"] = {"val_tile_batch": 4, "val_scales": (1.0,), "val_flip": False, **state["config"]}
    if version >= 2:
        return state
    state.setdefault("input_norm", IMAGENET.to_dict())
    state.setdefault("provenance", {})
    state.setdefault("metrics", {})
    state["config"] = {"val_protocol": "default", "val_long_side": 0, "val_mirror_margin": 0, "loss": "ce",
                       "loss_kwargs": {}, "callbacks": [], "callback_kwargs": {}, **state.get("config", {})}
    if "optimizer" in state:  # written by training: what a resume reads
        for key, value in (("extra", {}), ("callbacks", {}), ("data_position", None), ("world_size", 1),
                           ("nonfinite_run", 0), ("validation_pending", False)):
            state.setdefault(key, value)
    if "state_dict" in state and any(".stages." in key or key.startswith("stages.") for key in state["state_dict"]):
        state["state_dict"] = _rename_stage_keys(state)
    return state


def _rename_stage_keys(state: dict) -> dict:
    """Version 1's backbone keys under today's names: `stages.i.j.*` (stage i an nn.Sequential
    of its modules) or `stages.i.*` (a one-module stage) become the modules' own names. The
    model is built on the meta device only to read each backbone's `stage_names`."""
    import models
    from models.backbones import Backbone

    try:
        with torch.device("meta"):
            model = models.build_model(state["model"], state["num_classes"], pretrained=False,
                                       **state.get("model_kwargs", {}))
    except Exception:  # not a model of ours: model_from_checkpoint reports it
        return state["state_dict"]
    renamed = dict(state["state_dict"])
    for prefix, module in model.named_modules():
        if not isinstance(module, Backbone):
            continue
        legacy = f"{prefix}.stages." if prefix else "stages."
        for key in [k for k in renamed if k.startswith(legacy)]:
            stage, _, rest = key[len(legacy):].partition(".")
            try:
                names = module.stage_names[int(stage)]
                if len(names) > 1:
                    index, _, rest = rest.partition(".")
                    names = [names[int(index)]]
            except (ValueError, IndexError):
                continue  # not a key of ours then or now: strict loading reports it
            renamed[f"{legacy[:-len('stages.')]}{names[0]}.{rest}"] = renamed.pop(key)
    return renamed


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel and torch.compile wrappers."""
    model = getattr(model, "_orig_mod", model)
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def model_from_checkpoint(state: dict) -> nn.Module:
    """Rebuild the model a checkpoint describes and load its weights strictly."""
    import models

    missing = [key for key in ("model", "model_kwargs", "num_classes", "state_dict") if key not in state]
    if missing:
        raise CheckpointError(f"the checkpoint lacks {', '.join(missing)}: it was not written by a training "
                              f"script of this repository")
    if state["model"] not in models.list_models():
        raise CheckpointError(f"the checkpoint holds model {state['model']!r}, which this repository does not "
                              f"define; known models: {', '.join(models.list_models())}")
    try:
        model = models.build_model(state["model"], state["num_classes"], pretrained=False, **state["model_kwargs"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"cannot rebuild model {state['model']!r} with the checkpoint's options "
                              f"{state['model_kwargs']}: {err}") from None
    try:
        model.load_state_dict(state["state_dict"], strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint weights do not fit model {state['model']!r} with "
                              f"{state['num_classes']} classes and options {state['model_kwargs']}: {err}") from None
    return model


# ---------------------------------------------------------------- what produced a run

REPOSITORY = Path(__file__).resolve().parents[1]


def provenance() -> dict:
    """The code and libraries a run used: git commit and whether the tree had uncommitted
    changes (None outside a git checkout), torch, torchvision, Python, and the command line."""
    import sys

    import torchvision

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=REPOSITORY, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"git_commit": commit, "git_dirty": None if status is None else bool(status),
            "torch": str(torch.__version__), "torchvision": str(torchvision.__version__),
            "python": platform.python_version(), "command": " ".join(sys.argv)}


def write_run_config(run_dir: Path, config: dict, origin: dict, iteration: int) -> None:
    """Record in `run_dir/config.json` what produced the run: every config field and `origin`
    (see `provenance`). A resumed run keeps the first record and appends one entry per resume
    (its iteration, origin and the fields that changed), so no earlier record is lost."""
    path = run_dir / "config.json"
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    config = json.loads(json.dumps(config, default=str))  # as the file holds it: tuples are lists
    record = None
    if iteration > 0 and path.is_file():
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            record = None  # unreadable: start a new record rather than fail the run
    if record is None:
        record = {"config": config, **origin, "started": started, "resumes": []}
    else:
        changed = {k: v for k, v in config.items() if record.get("config", {}).get(k) != v}
        record.setdefault("resumes", []).append({"iteration": iteration, "started": started, **origin,
                                                 "changed": changed})
    text = json.dumps(record, indent=2, default=str) + "\n"
    _write_atomically(path, lambda f: f.write(text.encode()), "run record")
