"""Keep azure-ai-ml's console output off our stdout and stderr.

The SDK talks to a terminal on its own: `AzureMLPolling` prints a dot per poll to stdout, its
operations log "Check: endpoint ... exists" through StreamHandlers it attaches to stderr at
import, and uploads draw progress bars on stderr. The studio reports progress itself (the
`progress` callbacks), so inside `sdk_output()` that output goes to this module's logger at
DEBUG instead, with anything that looks like a SAS token or key removed.

Why not `contextlib.redirect_stdout`: the SDK prints from its poller's own thread, and the
operation runner runs several Azure operations at once, so a swapped `sys.stdout` would swallow
other threads' output and two overlapping redirects restore the wrong stream. Instead, while any
`sdk_output()` is active, sys.stdout/sys.stderr are wrapped by a stream that diverts only writes
made from SDK code (an `azure.*` frame on the writer's stack) and passes everything else through.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import threading
from collections.abc import Iterator
from typing import Any, TextIO

logger = logging.getLogger(__name__)
_SDK_PACKAGE = "azure."
# Query parameters and key-value pairs that carry credentials (SAS `sig=`, account keys, tokens).
_SECRET = re.compile(
    r"(?i)\b(sig|se|sv|sp|skoid|sktid|skt|ske|sks|skv|st|spr|srt|ss|sr|code|"
    r"accountkey|sharedaccesssignature|key|token|secret|password)=([^&\s;\"']+)"
)
_lock = threading.Lock()
_users = 0
# Set while this thread logs a diverted line: the app's own log handlers may write to the
# wrapped streams with SDK frames still on the stack, and those writes must pass through.
_logging = threading.local()


def redact(text: str) -> str:
    """`text` with the values of credential-looking parameters replaced by ***."""
    return _SECRET.sub(lambda m: f"{m.group(1)}=***", text)


def _log(source: str, text: str) -> None:
    cleaned = redact(text).strip(" \r\n")
    if not cleaned or cleaned == ".":  # polling dots say nothing the progress lines do not
        return
    _logging.active = True
    try:
        logger.debug("azure-ai-ml (%s): %s", source, cleaned)
    finally:
        _logging.active = False


def _from_sdk() -> bool:
    if getattr(_logging, "active", False):
        return False
    try:
        frame = sys._getframe(2)  # write()'s caller: print, a log handler, tqdm...
    except ValueError:  # called from the bottom of a stack: not from SDK code
        return False
    while frame is not None:
        if frame.f_globals.get("__name__", "").startswith(_SDK_PACKAGE):
            return True
        frame = frame.f_back
    return False


class _SdkDiverter:
    """A stream that sends the SDK's writes to the DEBUG log and everything else on."""

    def __init__(self, stream: TextIO, name: str) -> None:
        self.stream = stream
        self.name = name

    def write(self, text: str) -> int:
        if not _from_sdk():
            return self.stream.write(text)
        _log(self.name, text)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


class _ConsoleFilter(logging.Filter):
    """On the SDK's own console handlers: log the record at DEBUG here instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _users and not getattr(_logging, "active", False):
            _log(record.name, record.getMessage())
            return False
        return True


_FILTER = _ConsoleFilter()


def _divert_sdk_handlers() -> None:
    # The SDK attaches StreamHandlers bound to the stderr of import time to some of its loggers
    # (azure.ai.ml._utils._logger_utils.initialize_logger_info), so wrapping sys.stderr does not
    # reach them: filter those handlers instead (the filter lets records through outside
    # sdk_output, keeping the SDK's behaviour for anyone else in the process).
    for name, item in list(logging.Logger.manager.loggerDict.items()):
        if not name.startswith("azure") or not isinstance(item, logging.Logger):
            continue
        for handler in item.handlers:
            if isinstance(handler, logging.StreamHandler) and _FILTER not in handler.filters:
                handler.addFilter(_FILTER)


@contextlib.contextmanager
def sdk_output() -> Iterator[None]:
    """Divert azure-ai-ml's console output to the DEBUG log while the block runs (reentrant,
    any thread)."""
    global _users
    with _lock:
        _divert_sdk_handlers()
        if _users == 0:
            sys.stdout = _SdkDiverter(sys.stdout, "stdout")  # type: ignore[assignment]
            sys.stderr = _SdkDiverter(sys.stderr, "stderr")  # type: ignore[assignment]
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                # Only unwrap our own wrappers: someone may have replaced them meanwhile.
                if isinstance(sys.stdout, _SdkDiverter):
                    sys.stdout = sys.stdout.stream
                if isinstance(sys.stderr, _SdkDiverter):
                    sys.stderr = sys.stderr.stream
