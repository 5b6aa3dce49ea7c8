"""The front's log, bounded whatever callers send.

Anyone who can reach the port can make aiohttp log: every malformed request was an ERROR with
a traceback and the exception's text, which quotes up to 128 KB of the request (measured: 300
such requests added 38.5 MB to front.log in 1.1 s). So:

- a refused request is one line: where it came from and the parser's reason, cut to a short
  prefix (`MAX_QUOTED_CHARS`), never a traceback or the request's bytes beyond that;
- records about requests are rate-limited per source address: `PER_SOURCE_RECORDS` per
  `PER_SOURCE_WINDOW_SECONDS`, then one line saying how many were left out;
- any record is cut to `MAX_RECORD_CHARS` once formatted;
- the file rotates at `MAX_LOG_BYTES` with `LOG_BACKUPS` old files (logging's
  RotatingFileHandler), so the front's logs take at most (1 + LOG_BACKUPS) x MAX_LOG_BYTES.

The front is started with its stderr appended to `front.log` (local/servers.py). The handler
writes to that same file and, after each rotation, points file descriptor 2 at the new file, so
that what bypasses logging (a crash's traceback) follows instead of growing the rotated file.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
import time
from logging.handlers import RotatingFileHandler
from pathlib import Path

MAX_LOG_BYTES = 5 * 1024 * 1024
LOG_BACKUPS = 2
MAX_RECORD_CHARS = 4000
MAX_QUOTED_CHARS = 200
PER_SOURCE_RECORDS = 10
PER_SOURCE_WINDOW_SECONDS = 60.0
# Sources remembered at once; beyond that the oldest windows are forgotten (bounded memory).
MAX_SOURCES = 4096
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# aiohttp's logger for the server side of a connection (parse errors, unhandled exceptions).
AIOHTTP_SERVER_LOGGER = "aiohttp.server"


class _Window:
    __slots__ = ("count", "left_out", "started")

    def __init__(self, started: float) -> None:
        self.started = started
        self.count = 0
        self.left_out = 0


class RequestRecordLimit(logging.Filter):
    """Short, rate-limited records for what aiohttp logs about requests."""

    def __init__(
        self,
        per_source: int = PER_SOURCE_RECORDS,
        window_seconds: float = PER_SOURCE_WINDOW_SECONDS,
        clock=time.monotonic,
    ) -> None:
        super().__init__()
        self._per_source = per_source
        self._window = window_seconds
        self._clock = clock
        self._windows: dict[str, _Window] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        source = _source(record)
        now = self._clock()
        window = self._windows.get(source)
        note = ""
        if window is None or now - window.started >= self._window:
            if window is not None and window.left_out:
                note = f" ({window.left_out} more records from {source} were left out)"
            self._windows.pop(source, None)
            if len(self._windows) >= MAX_SOURCES:
                del self._windows[next(iter(self._windows))]
            window = self._windows[source] = _Window(now)
        window.count += 1
        if window.count > self._per_source:
            window.left_out += 1
            return False
        _shorten(record, source, note)
        return True


def _source(record: logging.LogRecord) -> str:
    # aiohttp logs "Error handling request from %s" with the peer address as the argument.
    args = record.args if isinstance(record.args, tuple) else ()
    return str(args[0]) if args else "unknown source"


def _shorten(record: logging.LogRecord, source: str, note: str) -> None:
    """One line: the message and, for an exception, its type and the first line of its text."""
    message = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        text = " ".join(str(exc).split())
        if len(text) > MAX_QUOTED_CHARS:
            text = text[:MAX_QUOTED_CHARS] + "..."
        message = f"{message}: {type(exc).__name__}: {text}"
    record.msg, record.args = message[:MAX_RECORD_CHARS] + note, None
    record.exc_info = record.exc_text = None
    record.stack_info = None


class _BoundedFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if len(text) > MAX_RECORD_CHARS:
            return text[:MAX_RECORD_CHARS] + f"... ({len(text) - MAX_RECORD_CHARS} chars cut)"
        return text


class StderrRotatingHandler(RotatingFileHandler):
    """A RotatingFileHandler that also moves `follow_fd` (stderr) to the new file."""

    def __init__(self, path: Path, max_bytes: int, backups: int, follow_fd: int | None) -> None:
        super().__init__(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self._follow_fd = follow_fd

    def doRollover(self) -> None:
        super().doRollover()
        if self._follow_fd is not None and self.stream is not None:
            os.dup2(self.stream.fileno(), self._follow_fd)


def stderr_file() -> Path | None:
    """The regular file stderr is appended to, if it is one."""
    try:
        if not stat.S_ISREG(os.fstat(2).st_mode):
            return None
        return Path(os.readlink("/proc/self/fd/2"))
    except OSError:
        return None


def configure(
    level: str,
    path: Path | None = None,
    max_bytes: int = MAX_LOG_BYTES,
    backups: int = LOG_BACKUPS,
) -> logging.Handler:
    """Send the process's logs to `path` (default: the file stderr goes to), bounded as above.

    When stderr is not a file (a terminal, a pipe), the logs go to stderr, shortened and
    rate-limited but not rotated. Returns the handler (tests remove it again).
    """
    follow = None
    if path is None:
        path = stderr_file()
        follow = 2
    handler: logging.Handler
    if path is None:
        handler = logging.StreamHandler(sys.stderr)
    else:
        handler = StderrRotatingHandler(path, max(1, max_bytes), max(1, backups), follow)
    handler.setFormatter(_BoundedFormatter(FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    # The limit sits on aiohttp's logger (not the handler), so that it sees each record once.
    server_log = logging.getLogger(AIOHTTP_SERVER_LOGGER)
    if not any(isinstance(f, RequestRecordLimit) for f in server_log.filters):
        server_log.addFilter(RequestRecordLimit())
    return handler
