"""Where and how this process runs: alone or as one rank under torchrun, on which
device, at which precision, and the random state that makes runs repeatable and
resumable. The same code runs alone, on one GPU, or under torchrun."""
from __future__ import annotations

import os
import random
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def init_distributed(device_type: str) -> None:
    """Join the process group torchrun describes: NCCL on CUDA, gloo on the CPU."""
    if not launched_by_torchrun() or dist.is_initialized():
        return
    if (os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True" and os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0")
            != "0" and os.environ.get("RANK") == "0" and os.environ.get("TORCHELASTIC_RESTART_COUNT") == "0"):
        # torchrun keeps one key store for all restarts, and a restarted process can read the
        # address a dead one left there: the new group then fails to connect (seen with gloo).
        print("note: with --max-restarts, start torchrun with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 in its "
              "environment, so that each restart gets a fresh key store (docs/scaling.md)", flush=True)
    if device_type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
        # device_id binds the NCCL communicator to this GPU, so barriers never guess it.
        dist.init_process_group("nccl", timeout=timedelta(minutes=30), device_id=device)
    else:
        dist.init_process_group("gloo", timeout=timedelta(minutes=30))


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Average `tensor` over all processes, in place (a no-op when running alone)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor)
        tensor /= dist.get_world_size()
    return tensor


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def max_over_ranks(values: list, device: torch.device) -> list[int]:
    """The largest of each value over all processes (ints or 0-d tensors; no collective when alone)."""
    if world_size() == 1:
        return [int(v) for v in values]
    flags = torch.stack([torch.as_tensor(v, dtype=torch.long).to(device) for v in values])
    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    return [int(v) for v in flags.tolist()]


# ---------------------------------------------------------------- device and precision

def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", local_rank())
    return torch.device(name)


def autocast_dtype(device: torch.device) -> torch.dtype:
    """The mixed-precision dtype on `device`: bf16 where supported, else fp16 (GPUs before Ampere)."""
    return torch.float16 if device.type == "cuda" and not torch.cuda.is_bf16_supported() else torch.bfloat16


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (AVX512-BF16 or AMX). Without it, bf16
    autocast is emulated and far slower than fp32; with it (e.g. AMX on Sapphire Rapids),
    `--amp --channels-last` is the fastest way to train on the CPU (docs/camvid.md)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


# ---------------------------------------------------------------- random state

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    numpy_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].copy()), *numpy_state[2:]],
        "torch": torch.get_rng_state(),
        # This process's own GPU only: get_rng_state_all() would open a context on every
        # GPU of the node from every rank, and could not be restored on fewer GPUs.
        "cuda": [torch.cuda.get_rng_state()] if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
    }


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy(), *rest))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"][0])
