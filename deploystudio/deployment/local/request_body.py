"""Reading a request body in the front with bounded memory and time.

The front buffers a body before it forwards it (the mirror deployment gets the same bytes), so
the body costs memory in proportion to its size, once: it is read into one buffer of the
announced length, never copied on the way (aiohttp's `request.read()` keeps a bytearray and a
bytes copy of it, and the old upstream join made two more). The socket is read only as fast as
the handler takes chunks: aiohttp's payload reader pauses the transport above 128 KiB, so a
body that waits for its turn costs no memory.

`LargeBodyGate` caps how many large bodies are held at once (a slot is kept until the forward
and its mirrored copy are both done): the rest wait for a slot, their bytes left in the kernel.
A body must arrive within `BODY_READ_SECONDS`, so that a client dribbling bytes cannot hold a
slot (or a connection) forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web

# Bodies above this size (or of unknown size: chunked) take a slot of the gate. 1 MiB is far
# above a typical JSON request of a few rows.
LARGE_BODY_BYTES = 1024 * 1024
# Large bodies held at once: with the default 100 MB limit that is 200 MB of bodies at most.
MAX_LARGE_BODIES_IN_FLIGHT = 2
# A large body waits at most this long for a slot before the front answers 503.
SLOT_WAIT_SECONDS = 30.0
# The whole body must arrive within this time (100 MB at 2 MB/s). Azure's front allows a
# request at most 180 s overall; reading the body is a small part of that.
BODY_READ_SECONDS = 60.0


class BodyTooLarge(Exception):
    """The body is above the front's limit (found while reading: chunked, no length)."""


class LargeBodyGate:
    """At most `limit` large bodies held at once, in one event loop."""

    def __init__(self, limit: int = MAX_LARGE_BODIES_IN_FLIGHT) -> None:
        self._slots = asyncio.Semaphore(limit)

    @staticmethod
    def needs_slot(content_length: int | None) -> bool:
        return content_length is None or content_length > LARGE_BODY_BYTES

    async def enter(self, wait_seconds: float = SLOT_WAIT_SECONDS) -> BodySlot:
        """A slot, once one is free; TimeoutError after `wait_seconds`."""
        async with asyncio.timeout(wait_seconds):
            await self._slots.acquire()
        return BodySlot(self._slots.release)


class BodySlot:
    """A gate's slot, given back when every holder (the forward, a mirror) let it go."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release
        self._holders = 1

    def hold(self) -> None:
        """One more holder (a mirrored copy that outlives the forward)."""
        self._holders += 1

    def let_go(self) -> None:
        self._holders -= 1
        if self._holders <= 0 and self._release is not None:
            release, self._release = self._release, None
            release()


async def read_body(
    request: web.Request, max_bytes: int, seconds: float = BODY_READ_SECONDS
) -> bytearray:
    """The request's body, within `seconds` (TimeoutError) and `max_bytes` (BodyTooLarge)."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise BodyTooLarge
    if length is not None and request.content.is_eof():
        # The whole body came with the headers (the usual small request): nothing can keep
        # the read waiting, so no timer is armed (one per request otherwise).
        return await _read_exactly(request, length)
    async with asyncio.timeout(seconds):
        if length is not None:
            return await _read_exactly(request, length)
        return await _read_chunked(request, max_bytes)


async def _read_exactly(request: web.Request, length: int) -> bytearray:
    body = bytearray(length)
    view = memoryview(body)
    filled = 0
    while filled < length:
        chunk = await request.content.readany()
        if not chunk:
            break
        # aiohttp's parser never gives more than Content-Length; the slice guards anyway.
        size = min(len(chunk), length - filled)
        view[filled : filled + size] = chunk[:size]
        filled += size
    view.release()
    if filled < length:
        # The client closed early: aiohttp would raise the same from request.read().
        raise web.HTTPBadRequest(text="The request body ended before its Content-Length.")
    return body


async def _read_chunked(request: web.Request, max_bytes: int) -> bytearray:
    body = bytearray()
    while chunk := await request.content.readany():
        if len(body) + len(chunk) > max_bytes:
            raise BodyTooLarge
        body += chunk
    return body
