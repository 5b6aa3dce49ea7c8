"""Framed messages between the app and its worker process over a socketpair, with large buffers
passed through a memory file instead of the socket.

A 100,000-row request is 3.2 MB of float columns. Through a socketpair, whose buffer holds
about 200 KB, that is a dozen rounds of one process filling the buffer and the other waking up
to drain it, which on a busy machine cost more than the prediction. So a message is a body plus
a list of buffers: small buffers travel inline after the body, large ones are written to a
memory file (memfd) that both processes hold, and only their positions (spans) travel in the
frame. The reader copies them out, into memory it owns, before it answers, so the writer can
reuse the file for the next message: the two processes take turns, one message at a time.

The worker runs model code, which can take the worker over and write anything to the socket
and the memory file, at any time. So everything read here is checked before it is used (frame
and span sizes, spans inside the message or the memory file), a frame that stalls halfway
times out, and the memory file is read and written with `pread`/`pwrite`, never mapped: a
mapping whose file the other side truncates kills the reader with SIGBUS, a read just comes up
short. What the body means is the caller's business: requests are pickles (the worker already
runs untrusted code, so it may unpickle what the app sends), replies are decoded by
`deploystudio.worker.replies`, which never unpickles.
"""

from __future__ import annotations

import os
import pickle
import select
import socket
import struct
import time
from typing import Any

PROTOCOL = 5
# Smaller buffers travel inline: for them a memory file saves nothing.
OUT_OF_BAND_MIN_BYTES = 64 * 1024
# What one message may hold, socket and memory file together: far above a 100,000-row preview
# (a few MB), and below what would take the app's memory with it.
MAX_MESSAGE_BYTES = 2 * 1024**3
MAX_BUFFERS = 1 << 16
_LENGTH = struct.Struct("!Q")  # the frame's length, before the frame
_HEAD = struct.Struct("!IQ")  # buffer count, body length
_SPAN = struct.Struct("!BQQ")  # where (inline / memory file), offset, length
_INLINE, _MEMORY_FILE = 0, 1


class MalformedMessageError(Exception):
    """A frame that breaks the format or its limits, or stalled halfway: the other side is not
    following the protocol (for the worker: model code took it over, or it broke)."""


def shared_memory_available() -> bool:
    return hasattr(os, "memfd_create")


def new_memory_file(name: str) -> int | None:
    """A memory file descriptor to pass to the other process (None where there is none:
    everything then goes through the socket)."""
    return os.memfd_create(name) if shared_memory_available() else None


def _write_all(fd: int, view: memoryview, offset: int) -> None:
    while view.nbytes:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _read_span(fd: int, offset: int, length: int) -> bytearray:
    """`length` bytes at `offset` of the memory file, copied into a new buffer."""
    buffer = bytearray(length)
    with memoryview(buffer) as target:
        done = 0
        while done < length:
            got = os.preadv(fd, [target[done:]], offset + done)
            if got <= 0:
                raise MalformedMessageError("a buffer reaches past the end of the memory file")
            done += got
    return buffer


class Channel:
    """Messages over `sock`; `outgoing_fd` and `incoming_fd` are memory files (from
    `new_memory_file`) this side writes and reads, or None."""

    def __init__(
        self, sock: socket.socket, outgoing_fd: int | None, incoming_fd: int | None
    ) -> None:
        self.sock = sock
        self.outgoing_fd = outgoing_fd
        self.incoming_fd = incoming_fd

    # ------------------------------------------------------------------------------ frames

    def send_frame(self, body: bytes, buffers: list[memoryview]) -> None:
        """`body` and `buffers` (contiguous, any size) as one message."""
        spans, inline, inline_size, file_size = [], [], 0, 0
        for buffer in buffers:
            view = buffer if buffer.format == "B" and buffer.ndim == 1 else buffer.cast("B")
            if self.outgoing_fd is not None and view.nbytes >= OUT_OF_BAND_MIN_BYTES:
                _write_all(self.outgoing_fd, view, file_size)
                spans.append(_SPAN.pack(_MEMORY_FILE, file_size, view.nbytes))
                file_size += view.nbytes
            else:
                inline.append(view)
                spans.append(_SPAN.pack(_INLINE, inline_size, view.nbytes))
                inline_size += view.nbytes
        parts = [_HEAD.pack(len(buffers), len(body)), *spans, body, *inline]
        size = sum(len(part) if isinstance(part, bytes) else part.nbytes for part in parts)
        self.sock.sendall(b"".join([_LENGTH.pack(size), *parts]))

    def recv_frame(self, timeout: float | None = None) -> tuple[memoryview, list[Any]]:
        """The next message's body and buffers, all checked against the format and its limits.
        `timeout` bounds the whole reading once the first byte is there (None: wait).

        Raises EOFError when the other side closed the socket, MalformedMessageError for
        anything else that is not a well-formed message."""
        deadline = None if timeout is None else time.monotonic() + timeout
        (size,) = _LENGTH.unpack(self._read_exactly(_LENGTH.size, deadline, first=True))
        if not _HEAD.size <= size <= MAX_MESSAGE_BYTES:
            raise MalformedMessageError(f"a frame of {size} bytes")
        frame = memoryview(self._read_exactly(size, deadline))
        count, body_size = _HEAD.unpack_from(frame)
        spans_end = _HEAD.size + count * _SPAN.size
        if count > MAX_BUFFERS or spans_end + body_size > size:
            raise MalformedMessageError("a frame shorter than its header says")
        inline = frame[spans_end + body_size :]
        buffers: list[Any] = []
        total = size
        for index in range(count):
            where, offset, length = _SPAN.unpack_from(frame, _HEAD.size + index * _SPAN.size)
            total += length if where == _MEMORY_FILE else 0
            if total > MAX_MESSAGE_BYTES:
                raise MalformedMessageError(f"buffers of more than {MAX_MESSAGE_BYTES} bytes")
            if where == _INLINE and offset + length <= inline.nbytes:
                buffers.append(inline[offset : offset + length])
            elif where == _MEMORY_FILE and self.incoming_fd is not None:
                if offset + length > os.fstat(self.incoming_fd).st_size:
                    raise MalformedMessageError("a buffer outside the memory file")
                buffers.append(_read_span(self.incoming_fd, offset, length))
            else:
                raise MalformedMessageError(
                    f"a buffer span ({where}, {offset}, {length}) outside the message"
                )
        return frame[spans_end : spans_end + body_size], buffers

    def _read_exactly(self, size: int, deadline: float | None, first: bool = False) -> bytearray:
        buffer = bytearray(size)
        with memoryview(buffer) as target:
            done = 0
            while done < size:
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise MalformedMessageError("a frame that stopped halfway")
                    self.sock.settimeout(left)
                try:
                    got = self.sock.recv_into(target[done:])
                except TimeoutError as exc:
                    raise MalformedMessageError("a frame that stopped halfway") from exc
                finally:
                    self.sock.settimeout(None)
                if not got:
                    if first and not done:
                        raise EOFError("the other side closed the channel")
                    raise MalformedMessageError("a frame cut short")
                done += got
        return buffer

    # ------------------------------------------------------------------ pickled messages

    def send(self, obj: Any) -> None:
        """`obj` pickled (protocol 5), its large contiguous buffers (numpy arrays, pandas
        blocks) out of band. For requests to the worker only: see `recv`."""
        large: list[memoryview] = []

        def out_of_band(buffer: pickle.PickleBuffer) -> bool:
            # Returning True keeps the buffer inside the pickle.
            if self.outgoing_fd is None:
                return True
            try:
                view = buffer.raw()
            except BufferError:  # not contiguous: pickle copies it in band
                return True
            if view.nbytes < OUT_OF_BAND_MIN_BYTES:
                return True
            large.append(view)
            return False

        self.send_frame(pickle.dumps(obj, protocol=PROTOCOL, buffer_callback=out_of_band), large)

    def recv(self) -> Any:
        """The next message, unpickled. Unpickling runs code the sender chooses: only the worker
        calls this, on what the app sends; the app reads replies with `recv_frame`."""
        body, buffers = self.recv_frame()
        return pickle.loads(body, buffers=buffers)

    def poll(self, timeout: float | None) -> bool:
        """Whether a message (or the end of the channel) is waiting, within `timeout` seconds."""
        readable, _, _ = select.select([self.sock], [], [], timeout)
        return bool(readable)

    def close(self) -> None:
        for fd in (self.outgoing_fd, self.incoming_fd):
            if fd is not None:
                os.close(fd)
        self.outgoing_fd = self.incoming_fd = None
        self.sock.close()
