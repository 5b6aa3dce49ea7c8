"""Pickled messages between the app and its worker process, with large buffers passed through
shared memory instead of the socket.

A 100,000-row request is 3.2 MB of float columns. Through a socketpair, whose buffer holds
about 200 KB, that is a dozen rounds of one process filling the buffer and the other waking up
to drain it, which on a busy machine cost more than the prediction. Pickle protocol 5 hands
out the large contiguous buffers (numpy arrays, pandas blocks) separately from the rest of the
pickle (`buffer_callback`); here they are written to a memory file that both processes map,
and only their positions travel with the pickle. The reader copies them out (one memcpy, into
memory it owns) before it answers, so the writer can reuse the file for the next message: the
two processes take turns, one message at a time.
"""

from __future__ import annotations

import mmap
import os
import pickle
import struct
from multiprocessing.connection import Connection
from typing import Any

PROTOCOL = 5
# Smaller buffers stay inside the pickle: for them a memory file saves nothing.
OUT_OF_BAND_MIN_BYTES = 64 * 1024
_COUNT = struct.Struct("!I")
_SPAN = struct.Struct("!QQ")


def shared_memory_available() -> bool:
    return hasattr(os, "memfd_create")


def new_memory_file(name: str) -> int | None:
    """A memory file descriptor to pass to the other process (None where there is none:
    everything then goes through the socket)."""
    return os.memfd_create(name) if shared_memory_available() else None


class _Region:
    """One direction's memory file: the writer grows it as needed, the reader maps what the
    message says was written."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd
        self._map: mmap.mmap | None = None

    def write(self, views: list[memoryview]) -> list[tuple[int, int]]:
        total = sum(v.nbytes for v in views)
        if not total:
            return []
        if os.fstat(self.fd).st_size < total:
            os.ftruncate(self.fd, max(total, 2 * os.fstat(self.fd).st_size))
        region = self._mapped(total)
        spans, offset = [], 0
        with memoryview(region) as target:
            for view in views:
                target[offset : offset + view.nbytes] = view
                spans.append((offset, view.nbytes))
                offset += view.nbytes
        return spans

    def read(self, spans: list[tuple[int, int]]) -> list[bytearray]:
        if not spans:
            return []
        region = self._mapped(max(offset + length for offset, length in spans))
        with memoryview(region) as source:
            return [bytearray(source[offset : offset + length]) for offset, length in spans]

    def _mapped(self, size: int) -> mmap.mmap:
        if self._map is None or len(self._map) < size:
            if self._map is not None:
                self._map.close()
            self._map = mmap.mmap(self.fd, os.fstat(self.fd).st_size)
        return self._map

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None


class Channel:
    """`send` and `recv` of Python objects over `connection`; `outgoing_fd` and `incoming_fd`
    are memory files (from `new_memory_file`) this side writes and reads, or None."""

    def __init__(
        self, connection: Connection, outgoing_fd: int | None, incoming_fd: int | None
    ) -> None:
        self.connection = connection
        self._outgoing = _Region(outgoing_fd) if outgoing_fd is not None else None
        self._incoming = _Region(incoming_fd) if incoming_fd is not None else None

    def send(self, obj: Any) -> None:
        large: list[memoryview] = []

        def out_of_band(buffer: pickle.PickleBuffer) -> bool:
            # Returning True keeps the buffer inside the pickle.
            if self._outgoing is None:
                return True
            try:
                view = buffer.raw()
            except BufferError:  # not contiguous: pickle copies it in band
                return True
            if view.nbytes < OUT_OF_BAND_MIN_BYTES:
                return True
            large.append(view)
            return False

        body = pickle.dumps(obj, protocol=PROTOCOL, buffer_callback=out_of_band)
        spans = self._outgoing.write(large) if large else []
        header = _COUNT.pack(len(spans)) + b"".join(_SPAN.pack(*span) for span in spans)
        self.connection.send_bytes(header + body)

    def recv(self) -> Any:
        message = self.connection.recv_bytes()
        (count,) = _COUNT.unpack_from(message)
        spans = [_SPAN.unpack_from(message, _COUNT.size + i * _SPAN.size) for i in range(count)]
        buffers = self._incoming.read(spans) if spans else []
        body = memoryview(message)[_COUNT.size + count * _SPAN.size :]
        return pickle.loads(body, buffers=buffers)

    def poll(self, timeout: float) -> bool:
        return self.connection.poll(timeout)

    def close(self) -> None:
        for region in (self._outgoing, self._incoming):
            if region is not None:
                region.close()
                if region.fd is not None:
                    os.close(region.fd)
        self.connection.close()
