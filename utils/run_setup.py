"""Setting up a run before its first step: the run folder, the model's placement and precision,
weights taken from another checkpoint, and the batch size a model needs.

Each is a function of its inputs, so that the Trainer's constructor reads as a list of steps.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from . import runtime
from .checkpoint import CheckpointError, load_checkpoint
from .faults import WriteFailed, remove_stale_temporaries
from .run_folder import agree, decide_resume
from .run_lock import RunLock, lock_run_folder
from .runtime import autocast_dtype, seed_everything


def prepare_run_dir(run_dir: Path, cfg, device: torch.device) -> tuple[RunLock | None, bool]:
    """(the run folder's lock, whether the run continues from its last.pth).

    The main process locks the folder, first, so that two runs started together cannot both
    find it free; then it decides (run_folder.py: it refuses a folder used otherwise, or sets its
    files aside with --overwrite) and checks that the folder is writable. Every other process
    holds no lock and follows rank 0's decision."""
    lock, resuming = _claim_run_dir(run_dir, cfg) if runtime.is_main() else (None, False)
    return lock, agree(resuming, device)


def _claim_run_dir(run_dir: Path, cfg) -> tuple[RunLock | None, bool]:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = lock_run_folder(run_dir)
    except OSError as err:
        raise WriteFailed(f"cannot write to run folder {run_dir}: {err}") from None
    resuming = decide_resume(run_dir, cfg.resume, cfg.overwrite, cfg.model, cfg.dataset)
    try:
        probe = run_dir / ".write-test"
        probe.write_bytes(b"0" * 4096)
        probe.unlink()
    except OSError as err:
        raise WriteFailed(f"cannot write to run folder {run_dir}: {err}") from None
    remove_stale_temporaries(run_dir)
    return lock, resuming


def check_batch_size(model: nn.Module, cfg, device: torch.device, model_kwargs: dict) -> None:
    """A model that normalises over the batch where it has one value per image (PSPNet with
    bin_batch_norm) says how many images it needs; fail now rather than at the first step."""
    needed = getattr(model, "min_batch_size", 1)
    synced = cfg.sync_bn and device.type == "cuda" and runtime.world_size() > 1
    per_norm = cfg.batch_size * (runtime.world_size() if synced else 1)
    if per_norm < needed:
        raise SystemExit(f"--batch-size {cfg.batch_size}: {cfg.model} with options {model_kwargs} "
                         f"normalises a 1x1 map over the batch (BatchNorm in its 1x1 pyramid bin) and needs at "
                         f"least {needed} images per batch in training; raise --batch-size, or build it "
                         f"without that BatchNorm (--model-kwargs '{{\"bin_batch_norm\": false}}')")


def place_model(model: nn.Module, cfg, device: torch.device) -> tuple[nn.Module, nn.Module, nn.Module]:
    """SyncBatchNorm, device, memory format, DDP and torch.compile, in that order.
    Returns (the plain module, the module to save and validate (DDP-wrapped under torchrun),
    the module to train (compiled with --compile))."""
    if runtime.world_size() > 1 and cfg.sync_bn:
        if device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        elif runtime.is_main():
            print("note: SyncBatchNorm needs CUDA; on the CPU each process normalises over its own batch")
    if runtime.rank() > 0:
        # DDP copies rank 0's weights to every rank; from here on each rank draws its
        # own random numbers (dropout) instead of repeating rank 0's.
        seed_everything(cfg.seed + runtime.rank())
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    wrapped = model
    if runtime.world_size() > 1:
        ids = [device.index] if device.type == "cuda" else None
        wrapped = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    return model, wrapped, torch.compile(wrapped) if cfg.compile else wrapped


def choose_autocast_dtype(amp: bool, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of --amp on `device` (None without it), with a note where bf16 is emulated."""
    if not amp:
        return None
    if device.type == "cpu" and runtime.is_main() and not runtime.cpu_has_native_bf16():
        # Measured in benchmarks/README.md: emulated bf16 ran 10 to 40 times slower than fp32.
        print("note: this CPU has no native bf16 (AVX512-BF16 or AMX), so --amp emulates it "
              "and is much slower than fp32; leave --amp off here")
    return autocast_dtype(device)


def init_from(model: nn.Module, path: str, model_name: str, num_classes: int, model_kwargs: dict) -> None:
    """Load every tensor of checkpoint `path` whose name and shape match `model`'s.

    Partial loading is the point (FCN-16s from FCN-32s, fine-tuning on another class
    count), so only a checkpoint that gives nothing is an error; what was left out is said.
    """
    state = load_checkpoint(path)
    source = state["state_dict"]
    own = model.state_dict()
    matched = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
    other = (f"{state.get('model')!r} with {state.get('num_classes')} classes and options "
             f"{state.get('model_kwargs')}")
    if not any(v.is_floating_point() for v in matched.values()):  # counters alone are no match
        raise CheckpointError(f"--init-from {path}: no tensor of its model {other} matches model "
                              f"{model_name!r} with {num_classes} classes and options {model_kwargs}")
    model.load_state_dict(matched, strict=False)
    if runtime.is_main():
        note = f"initialised {len(matched)}/{len(own)} tensors from {path} ({other})"
        reshaped = [k for k, v in source.items() if k in own and own[k].shape != v.shape]
        if reshaped:
            note += f"; {len(reshaped)} differ in shape and start fresh, e.g. {reshaped[0]}"
            if state.get("num_classes") != num_classes:
                note += f" (the checkpoint has {state.get('num_classes')} classes, this run {num_classes})"
        print(note)
