"""A value read off the page's thread and served stale while it is read again.

For what a page shows beside its content rather than as it (the Browse filters' help, read from
every model in the registry: two 1,000-model searches on a 2,000-model registry): st.cache_data
with a TTL makes the first visitor after each expiry wait for the read before the page's table;
this answers at once with the last value (None before the first read ends) and reads again in
a background thread once the value is older than its TTL.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class Refreshing(Generic[T]):
    def __init__(self, read: Callable[[], T], ttl_seconds: float) -> None:
        self._read = read
        self._ttl = ttl_seconds
        self._lock = threading.Lock()
        self._value: T | None = None
        self._read_at: float | None = None
        self._reading = False

    def get(self) -> T | None:
        """The last value read, at once; starts a read when it is missing or old."""
        with self._lock:
            fresh = self._read_at is not None and time.monotonic() - self._read_at < self._ttl
            if not fresh and not self._reading:
                self._reading = True
                threading.Thread(target=self._refresh, name="refreshing", daemon=True).start()
            return self._value

    def wait(self, timeout_seconds: float) -> T | None:
        """The value once a read has ended (for tests and scripts; pages call `get`)."""
        deadline = time.monotonic() + timeout_seconds
        value = self.get()
        while self._reading and time.monotonic() < deadline:
            time.sleep(0.02)
        return self._value if self._value is not None else value

    def _refresh(self) -> None:
        try:
            value = self._read()
        except Exception as exc:  # the page's own read says why, where the user looks
            log.warning("A background read failed (the next page run retries): %s", exc)
            value = None
        with self._lock:
            if value is not None:
                self._value, self._read_at = value, time.monotonic()
            self._reading = False
