"""gunicorn hooks of the model servers we run (`gunicorn --config <this file>`).

A gunicorn worker notices that its master died only when it next wakes up: an idle sync worker
sleeps up to half the worker timeout (a minute here) and one busy in init() not before init()
returns. Meanwhile it still holds the listening socket, so a `kill -9` of the master left the
port answering. Each worker asks the kernel to SIGKILL it as soon as its master ends
(PR_SET_PDEATHSIG), so a server's port is freed with its master, whoever kills it.

Kept free of imports beyond the standard library: the master loads this file at start, in
whatever interpreter runs the server. gunicorn ignores the names here that are no settings.
"""

from __future__ import annotations

import ctypes
import os
import signal
from typing import Any

# From <linux/prctl.h>.
PR_SET_PDEATHSIG = 1


def post_fork(server: Any, worker: Any) -> None:
    """In each new worker: die with the master."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    # The master may have died between the fork and the prctl: the signal would never come.
    if os.getppid() != server.pid:
        os._exit(1)
