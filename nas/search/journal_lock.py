"""A journal-file lock that a killed process cannot leave behind.

Optuna's file locks (`JournalFileOpenLock`, `JournalFileSymlinkLock`) are lock *files*: a worker
SIGKILLed between creating and removing one leaves it, and every other worker waits out a 30 s
grace period before breaking it (seen in CI: a killed worker's trial failed 31.7 s after the kill
instead of within the 1.5 s heartbeat grace). An advisory `flock` on an open file is dropped by the
kernel when its holder dies, so there is nothing stale to wait for, and no grace period that could
break a live but slow writer's lock. Where `fcntl` is missing (Windows), Optuna's open lock is used.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import optuna

try:
    import fcntl
except ImportError:  # pragma: no cover - not on the platforms CI runs
    fcntl = None  # type: ignore[assignment]


def flock_path(journal: str) -> Path:
    """The lock's file beside the journal, hidden (`.NAME.flock`): it stays, and a run folder's listing skips it."""
    path = Path(journal)
    return path.with_name(f".{path.name}.flock")


class JournalFlock(optuna.storages.journal.JournalFileOpenLock):
    """Exclusive `flock` on `flock_path(PATH)` around each journal append (the interface of Optuna's file locks:
    `acquire()` blocks and returns True, `release()`); threads of one process take turns first."""

    def __init__(self, filepath: str) -> None:
        super().__init__(filepath, grace_period=None)
        self.lock_path = flock_path(filepath)
        self.thread_lock = threading.Lock()
        self.fd: int | None = None

    def acquire(self) -> bool:
        self.thread_lock.acquire()
        try:
            fd = os.open(self.lock_path, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
        except BaseException:
            self.thread_lock.release()
            raise
        self.fd = fd
        return True

    def __getstate__(self) -> dict:  # a storage sent to another process: no thread lock or descriptor travels
        return {k: v for k, v in self.__dict__.items() if k not in ("thread_lock", "fd")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, thread_lock=threading.Lock(), fd=None)

    def release(self) -> None:
        fd, self.fd = self.fd, None
        if fd is None:
            raise RuntimeError("Error: did not possess lock")  # as Optuna's locks say it
        try:
            os.close(fd)  # closing the only descriptor drops the flock
        finally:
            self.thread_lock.release()


def journal_lock(path: str) -> optuna.storages.journal.JournalFileOpenLock:
    """The lock for journal file `path`: `JournalFlock`, or Optuna's own where `flock` does not exist."""
    return JournalFlock(path) if fcntl is not None else optuna.storages.journal.JournalFileOpenLock(path)
