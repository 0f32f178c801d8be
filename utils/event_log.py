"""TensorBoard's SummaryWriter, made harmless when its writes fail.

Event files are a convenience; checkpoints are what a run must not lose. When the
disk fills up (or the folder vanishes), SummaryWriter fails in two places: its
methods raise in the training thread, and its background writer thread dies with
a traceback on stderr. `SafeEventWriter` catches the first, silences the second
(a `threading.excepthook` that takes the writer threads' exceptions only), reports
the failure once in one line, and from then on drops events, so that training,
validation and checkpointing go on as if nothing had happened.
"""
from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any, Callable

_WRITER_THREAD_MODULE = "tensorboard.summary.writer.event_file_writer"
_owners: dict[threading.Thread, "SafeEventWriter"] = {}  # writer thread -> the writer it serves
_open: list["SafeEventWriter"] = []


def _writer_thread_hook(previous: Callable) -> Callable:
    def hook(args: threading.ExceptHookArgs) -> None:
        if type(args.thread).__module__ != _WRITER_THREAD_MODULE:
            return previous(args)
        # A thread started by a writer of ours, or by SummaryWriter.add_hparams (which opens a
        # writer of its own inside a call on the newest writer).
        owner = _owners.get(args.thread) or (_open[-1] if _open else None)
        if owner is None:
            return previous(args)
        owner._thread_error = args.exc_value
    hook.previous = previous
    return hook


def _install_hook() -> None:
    # Installed anew whenever something else (pytest, another library) has replaced it.
    if not hasattr(threading.excepthook, "previous"):
        threading.excepthook = _writer_thread_hook(threading.excepthook)


class SafeEventWriter:
    """A SummaryWriter for `log_dir` whose failures are reported once and never raised.

    Every SummaryWriter method (add_scalar, add_image, add_text, add_hparams,
    flush, close), and `add_summary` (a ready summary protobuf, written as
    `SummaryWriter.file_writer.add_summary` does), can be called on it; after a
    failure they do nothing.
    """

    def __init__(self, log_dir: Path | str) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(log_dir)
        self.failure: str | None = None  # the first failure, as reported
        self._thread_error: BaseException | None = None
        self._writer: Any = None
        _install_hook()
        _open.append(self)
        before = set(threading.enumerate())
        try:
            self._writer = SummaryWriter(str(log_dir))
        except Exception as err:
            self._fail(err)
        for thread in set(threading.enumerate()) - before:
            _owners[thread] = self

    def __getattr__(self, name: str) -> Callable:
        from torch.utils.tensorboard import SummaryWriter

        if name.startswith("_") or not callable(getattr(SummaryWriter, name, None)):
            raise AttributeError(name)

        return lambda *args, **kwargs: self._guarded(lambda: getattr(self._writer, name)(*args, **kwargs))

    def _guarded(self, write: Callable) -> Any:
        if self._thread_error is not None:
            self._fail(self._thread_error)
        if self._writer is None:
            return None
        try:
            return write()
        except Exception as err:
            self._fail(err)
            return None

    def add_summary(self, summary, step: int | None = None) -> None:
        self._guarded(lambda: self._writer.file_writer.add_summary(summary, step))

    def close(self) -> None:
        try:
            self.__getattr__("close")()
            if self._thread_error is not None:  # the thread failed on the final writes
                self._fail(self._thread_error)
        finally:
            self._writer = None
            if self in _open:
                _open.remove(self)
            for thread in [t for t, owner in _owners.items() if owner is self]:
                del _owners[thread]

    def _fail(self, err: BaseException) -> None:
        # Drop the writer without flushing it: the flush would fail the same way. Its
        # thread is a daemon that has died or waits on an empty queue.
        self._writer, self._thread_error = None, None
        if self.failure is None:
            self.failure = f"{type(err).__name__}: {err}"
            print(f"warning: cannot write TensorBoard events in {self.log_dir} ({self.failure}); training goes "
                  f"on without them, checkpoints are not affected", file=sys.stderr, flush=True)
