"""Tell a deployment start in progress from one whose process died.

A record left pending or starting may belong to a start still running in another process (the
CLI, a second app) or to one whose process was killed (kill -9, out of memory, a restart of the
machine). While it works on a deployment, the starting process holds a shared advisory lock
(flock) on a file in the deployment's folder; the kernel drops the lock when the process ends,
however it ends. `reconcile` can then settle an abandoned record at once instead of waiting for
a grace period, and never touches one that is still being started.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = ".starter.lock"


@contextlib.contextmanager
def starting(folder: Path) -> Iterator[None]:
    """Hold the deployment's starter lock (shared: several starts in one process may nest)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock


def abandoned(folder: Path) -> bool:
    """Whether a start of this deployment ran here and no process is starting it now.

    False when no start ever took the lock here (records from before the lock, or written by
    other tools): the caller then falls back on the record's age.
    """
    return _lock_state(folder) == "free"


def in_progress(folder: Path) -> bool:
    """Whether another process (or another start in this one) holds the lock now: a start, an
    update, or the front's restart of the server (healing.py)."""
    return _lock_state(folder) == "held"


def _lock_state(folder: Path) -> str:
    """The lock is "held" by a start now, "free" (a start ran here and is gone), or "none"."""
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDWR)
    except OSError:
        return "none"
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return "held"
    finally:
        os.close(fd)
    return "free"
