"""Faults a long run must survive: stop signals, non-finite steps, a full disk.

`StopSignals` turns the first SIGINT / SIGTERM into a request that the loop
honours after the current step (write last.pth, exit 128 + signal number); a
second signal exits at once. `NonFiniteGuard` skips optimiser steps whose
loss or gradients are not finite and reports when `limit` of them came in a
row. `check_free_space` refuses to start a run whose checkpoints cannot fit;
that and every other failure to write the run folder end the process with
EXIT_WRITE_FAILED (`WriteFailed`), a status of its own, so that a scheduler or a
job script can tell "free some space first" from a crash worth retrying.
"""
from __future__ import annotations

import os
import shutil
import signal
import threading
from pathlib import Path

import torch
from torch import nn


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# sysexits.h's EX_IOERR: the run folder could not be written (a full disk, a quota, lost permissions).
EXIT_WRITE_FAILED = 74


class WriteFailed(SystemExit):
    """Ends the process with EXIT_WRITE_FAILED; str() is the message, which the catcher prints
    (a SystemExit with a number for its code exits silently)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.code = EXIT_WRITE_FAILED


class StopSignals:
    """Context manager: while active, the first SIGINT/SIGTERM sets `received`; a second one
    exits the process at once with status 128 + signal number.

    Exiting at once is safe for the files: checkpoints are only ever renamed into
    place whole, so an abandoned write leaves the previous checkpoint (and a
    temporary file that the next start removes).
    """

    def __init__(self) -> None:
        self.received: int = 0
        self._previous: dict = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        # os.write, not print: a handler may run while the main thread is inside a print
        # to the same stream, and a buffered stream refuses re-entrant writes.
        if self.received:
            os.write(2, f"\n{name} again: exiting at once (last.pth holds the last completed save)\n".encode())
            os._exit(128 + signum)
        self.received = signum
        os.write(2, f"\n{name} received: finishing the current step, then writing last.pth and stopping "
                    f"(send it again to exit at once)\n".encode())


class NonFiniteGuard:
    """Skips optimiser steps with a non-finite loss or gradient; counts them in a row.

    Host synchronisation: the finiteness flag is a device tensor. With a fused
    optimiser (CUDA) it is handed to the optimiser as `found_inf`, the hook
    GradScaler uses: the fused kernels then leave weights, moments and step
    counts untouched, so skipping costs no sync. Unfused optimisers must branch
    on the host; on the CPU that read is free (there is no queue of kernels to
    drain), which is why the engine uses fused optimisers on CUDA.
    The length of the current run of bad steps and the first iteration at which
    it reached `limit` (`tripped_at`, -1 before) are kept on the device too, updated
    every step. Reading them at the engine's sync points (each log interval and
    before every checkpoint write) therefore finds the exact iteration of the
    limit-th consecutive bad step however late it is read; and since every bad
    step was skipped, the weights in between are the last good ones, never NaN.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, limit: int, device: torch.device) -> None:
        self.optimizer, self.limit = optimizer, limit
        self.fused = any(group.get("fused") for group in optimizer.param_groups)
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.run = torch.zeros((), dtype=torch.long, device=device)
        self.tripped_at = torch.full((), -1, dtype=torch.long, device=device)
        self.skipped = torch.zeros((), dtype=torch.long, device=device)

    @property
    def deferred(self) -> bool:
        """True when reading the counters costs a device sync (read them at sync points only)."""
        return self.run.device.type != "cpu"

    def step(self, loss: torch.Tensor, iteration: int) -> None:
        """optimizer.step() unless `loss` or a gradient is non-finite; `iteration` numbers this step."""
        grads = [p.grad for p in self.params if p.grad is not None]
        bad = ~torch.isfinite(loss.detach().float())
        if grads:
            bad = bad | ~torch.isfinite(torch.nn.utils.get_total_norm(grads))
        if self.fused:
            self.optimizer.found_inf = bad.float()
            try:
                self.optimizer.step()
            finally:
                del self.optimizer.found_inf
        elif not bad.item():
            self.optimizer.step()
        self.run = torch.where(bad, self.run + 1, 0)
        self.skipped += bad
        self.tripped_at = torch.where((self.run >= self.limit) & (self.tripped_at < 0), iteration, self.tripped_at)

    def take_skipped(self) -> int:
        """Steps skipped since the last call (a host sync)."""
        count = int(self.skipped)
        self.skipped.zero_()
        return count

    def state(self) -> int:
        return int(self.run)

    def load_state(self, run: int) -> None:
        self.run.fill_(run)


def finite_weights(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point())


def checkpoint_bytes(model: nn.Module, optimizer_slots: int) -> int:
    """An estimate of one checkpoint's size: weights and buffers, plus `optimizer_slots`
    tensors the size of each trainable parameter (SGD momentum: 1, Adam: 2)."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return weights + optimizer_slots * trainable + 64 * 1024  # metadata, pickling overhead


def check_free_space(folder: Path, one_checkpoint: int) -> None:
    """WriteFailed unless `folder` has room for the checkpoints still to be written: last.pth,
    best.pth and the temporary copy that exists while either is replaced."""
    missing = sum(not (folder / name).exists() for name in ("last.pth", "best.pth"))
    needed = (1 + missing) * one_checkpoint
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise WriteFailed(f"not enough free space for checkpoints in {folder}: {free / 2**20:.1f} MiB free, "
                         f"about {needed / 2**20:.1f} MiB needed (last.pth and best.pth of "
                         f"{one_checkpoint / 2**20:.1f} MiB each, plus a temporary copy while one is written); "
                         f"free some space or pass --run-dir on another disk")


def checkpoint_write_failed(error: Exception | None, run_dir: Path, iteration: int, saved_iteration: int) -> str:
    """The one line a run stops with when a checkpoint could not be written (`error` is rank 0's;
    None on the other ranks, which print nothing)."""
    kept = f"last.pth of iteration {saved_iteration}" if saved_iteration >= 0 else "no checkpoint of this run yet"
    return (f"stopping at iteration {iteration}: {error or 'rank 0 could not write its checkpoint'}. {run_dir} "
            f"keeps {kept}, whole; free some space there, then continue with --resume (or --resume auto)")


def remove_stale_temporaries(folder: Path) -> None:
    """Temporary checkpoint files left by a process killed mid-write."""
    for name in ("last.pth", "best.pth"):
        for stale in folder.glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)
