"""One writer per folder: an advisory ``fcntl.flock`` on ``FOLDER/.arpo.lock``, held while a run writes.

``arpo eval`` (a result folder) and ``arpo train`` (an output folder) take it for the whole run, so a
second process on the same folder fails fast with :class:`FolderBusy` instead of interleaving rows or
racing on temporary files::

    with folder_lock(out, "arpo eval", hint="--out"):
        ...  # write

The lock file holds the holder's pid and purpose (``"12345 arpo eval"``), which the refusal names. The
lock belongs to the open file: it is released when the lock is released, the file is closed, or the
process dies (even by SIGKILL), so a crash never leaves a stale lock. The file itself stays (deleting it
would let two processes lock two different files).

Not covered: Windows (no ``fcntl``), network file systems without working ``flock`` (some NFS setups),
locking a folder twice from one process (the second attempt is refused like another process's), and
children started with ``fork`` but without ``exec`` (they inherit the lock and hold it until they exit).
"""
from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

LOCK_NAME = ".arpo.lock"


class FolderBusy(RuntimeError):
    """Another process (or another lock in this one) is writing the folder."""

    def __init__(self, folder: Path, pid: int | None, holder: str, hint: str):
        self.folder, self.pid, self.holder = folder, pid, holder
        who = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(f"another {holder} is writing {folder} ({who}); wait for it or use another {hint}")


class FolderLock:
    """A held lock on ``folder`` (see the module docstring); :meth:`release` is idempotent."""

    def __init__(self, folder: str | Path, purpose: str, hint: str = "folder"):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / LOCK_NAME
        f: IO[str] = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            pid, holder = _parse(f.read())
            f.close()
            raise FolderBusy(self.folder, pid, holder or purpose, hint) from None
        except BaseException:
            f.close()
            raise
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()} {purpose}\n")
        f.flush()
        self._file: IO[str] | None = f

    @property
    def held(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        f, self._file = self._file, None
        if f is None:
            return
        try:
            f.truncate(0)  # no stale pid in the file once released
        finally:
            f.close()  # closing the file drops the flock

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _parse(text: str) -> tuple[int | None, str]:
    pid_s, _, holder = text.strip().partition(" ")
    return (int(pid_s) if pid_s.isdigit() else None), holder.strip()


@contextmanager
def folder_lock(folder: str | Path, purpose: str, hint: str = "folder") -> Iterator[FolderLock]:
    """Hold the folder's lock for the ``with`` block; raises :class:`FolderBusy` at once when taken.
    ``purpose`` (``"arpo eval"``) is what a refused process is told; ``hint`` names the option that picks
    another folder (``"--out"``)."""
    lock = FolderLock(folder, purpose, hint)
    try:
        yield lock
    finally:
        lock.release()
