"""One run per run folder: an advisory lock that a run holds for its whole life.

Two runs writing into one folder (a requeued job beside its still-running first
copy, a mistyped --run-dir) would write last.pth, best.pth and the event files in
turn, and a later --resume would continue the mixture as if it were one run. So
the main process locks `run.lock` in the folder before it looks at anything
there, and a second run stops at once, naming the host and process that hold it.

The lock is a POSIX record lock (`fcntl.lockf`): the kernel drops it when the
process ends, however it ends (kill -9 included), so a lock file left behind by
a dead run never blocks the next one; the file only says who held it last.
POSIX locks are also what NFS forwards to its lock manager, so runs on different
hosts that share the folder see each other's locks. They belong to the process,
not to the file descriptor: DataLoader workers forked from the run do not hold
it, the same process may lock the same folder twice (tests build several
trainers on one folder in one process), and any close of the file by the
holding process drops the lock, so nothing else here opens run.lock.

Readers (eval.py, predict.py, --init-from) take no lock: checkpoints are renamed
into place whole, so a locked folder's files can be read at any time.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

LOCK_NAME = "run.lock"
# A file system without lock support answers with one of these; the run then goes on unprotected.
_NO_LOCKS = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP)


class RunFolderInUse(SystemExit):
    """Another live process holds the run folder's lock; the message names it."""


class RunLock:
    """The lock a run holds on its folder; `release()` (or the process's end) gives it up."""

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path, self._fd = path, fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        # Closing the descriptor drops the lock; the file stays, naming its last holder.
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def lock_run_folder(folder: Path) -> RunLock:
    """Lock `folder` (which must exist) for this process, or raise RunFolderInUse.

    OSError when the lock file cannot be created or written (a read-only or full
    folder): the caller reports it as an unwritable run folder."""
    path = folder / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EACCES, errno.EAGAIN):
                holder = _read_holder(fd)
                os.close(fd)
                raise RunFolderInUse(in_use_message(folder, holder)) from None
            os.close(fd)
            if err.errno in _NO_LOCKS:
                print(f"note: the file system of {folder} does not support file locks ({err.strerror}); "
                      f"nothing stops a second run from writing into this folder meanwhile", file=sys.stderr)
                return RunLock(path, None)
            raise
        # A holder never deletes the file, but a person might: if the name now points to
        # another file, the lock just taken protects nothing, so take the new file's.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        record = json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                             "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": " ".join(sys.argv)})
        os.ftruncate(fd, 0)
        os.pwrite(fd, (record + "\n").encode(), 0)
    except OSError:
        os.close(fd)
        raise
    return RunLock(path, fd)


def _read_holder(fd: int) -> dict:
    try:
        holder = json.loads(os.pread(fd, 64 * 1024, 0).decode(errors="replace"))
    except (OSError, ValueError):
        return {}  # empty: the holder has locked the file and not yet written its name
    return holder if isinstance(holder, dict) else {}


def in_use_message(folder: Path, holder: dict) -> str:
    if holder.get("pid") is not None:
        who = f"process {holder['pid']} on host {holder.get('host', '?')}, started {holder.get('started', '?')}"
    else:
        who = "a process that is just starting"
    return (f"run folder {folder} is in use by another run ({who}; see {folder / LOCK_NAME}): two runs "
            f"would write its last.pth, best.pth and event files in turn. Wait for that run to end or stop it, "
            f"or pass --run-dir for another folder; eval.py and predict.py can read its checkpoints meanwhile")
