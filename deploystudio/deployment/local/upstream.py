"""HTTP/1.1 requests from an endpoint's front to its deployment servers on 127.0.0.1.

httptools (llhttp, the C parser of Node.js, as uvicorn uses it) reads the answers: framing,
content length or chunked bodies, keep-alive. The request head is written here: the front
sends one POST with a few headers, all of which came through aiohttp's own parser (no CR or
LF in them; checked again here). Why not aiohttp's client, when the front already serves with
aiohttp: measured on this 2-core machine against the same server, aiohttp's client spent
0.9-1.2 ms of CPU per request. Why not h11 any more (used here until issue 16): it is pure
Python, and one request and answer through it cost 0.2 ms of CPU (timeit, 1-row iris answer),
a large part of what the front spent per request; the same through httptools costs a tenth.

Why a pool of kept-alive connections (`Upstream`): MLflow's scoring server (uvicorn) keeps a
connection open between requests, and opening one per request is a large part of what the front
spends. Measured here (shared 2-core machine, iris, 1-row requests against MLflow's
server): this client used 0.9 ms of CPU per request on a kept connection and 1.5 ms on a new one
each time (the server's CPU did not change); in bench/endpoint.py the front then added 0.4-0.8 ms
at p50 in front of MLflow's server, against 9 ms in an earlier run with `Connection: close`
(a busier machine then, so partly load). The Azure ML inference server runs gunicorn sync
workers, which close the connection after every answer whatever the client asks: such a
connection is simply not kept, so nothing changes there.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass

import httptools

HOST = "127.0.0.1"
_READ_SIZE = 256 * 1024
_WRITE_SIZE = 1024 * 1024
# A connection idle for longer is closed rather than reused: well under uvicorn's default
# keep-alive timeout (5 s), so that we are not the one sending while the server closes it.
IDLE_SECONDS = 2.0
# Idle connections kept per server; a burst above that opens more and closes them after.
MAX_IDLE_PER_PORT = 16


class UpstreamError(Exception):
    """The server could not be reached, closed the connection early, or spoke bad HTTP."""


@dataclass(frozen=True)
class UpstreamResponse:
    """A server's answer: status, headers (names in lower case), body."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0
    # Whether any byte of an answer came on it: only a connection that said nothing at all may
    # have been closed by the server before it read the request.
    answered: bool = False
    # Whether the last answer was complete and the server keeps the connection open.
    keep: bool = False

    def reusable(self, now: float) -> bool:
        return not self.reader.at_eof() and now - self.idle_since < IDLE_SECONDS

    def close(self) -> None:
        self.writer.close()


class _Answer:
    """httptools' callbacks for one answer: what it read so far."""

    __slots__ = ("chunks", "done", "framed", "head_done", "headers", "keep_alive", "parser")

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.head_done = False
        self.done = False
        # A length or chunked body; without either the body runs until the server closes.
        self.framed = False
        # llhttp's keep-alive answer holds only while the message is parsed: read it then.
        self.keep_alive = False
        self.parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length" or name == b"transfer-encoding":
            self.framed = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.head_done = True
        assert self.parser is not None
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.done = True


async def post(
    port: int,
    path: str,
    body: bytes | bytearray,
    headers: Iterable[tuple[bytes, bytes]],
    timeout: float,
) -> UpstreamResponse:
    """POST `body` to http://127.0.0.1:`port``path` on a connection of its own, closed after;
    the whole answer within `timeout` seconds.

    `headers` must not hold Host, Content-Length, Connection or Transfer-Encoding: they are
    set here. Raises TimeoutError when the answer is late, UpstreamError when there is none.
    """
    async with asyncio.timeout(timeout):
        connection = await _connect(port)
        try:
            return await _exchange(connection, port, path, body, headers, keep_alive=False)
        except OSError as exc:
            raise UpstreamError(f"{HOST}:{port} broke off the answer: {exc}") from exc
        finally:
            await _closed(connection)


class Upstream:
    """Requests to the deployment servers over kept-alive connections, per port.

    One per front, used from its event loop only (no locks). A connection goes back to the pool
    only when the server answered in full and did not ask to close it.
    """

    def __init__(self) -> None:
        self._idle: dict[int, list[_Connection]] = {}
        self._sweep: asyncio.TimerHandle | None = None

    async def post(
        self,
        port: int,
        path: str,
        body: bytes | bytearray,
        headers: Iterable[tuple[bytes, bytes]],
        timeout: float,
    ) -> UpstreamResponse:
        """As the module's `post`, on a kept-alive connection when one is idle."""
        headers = list(headers)
        async with asyncio.timeout(timeout):
            while True:
                connection = self._take(port)
                reused = connection is not None
                if connection is None:
                    connection = await _connect(port)
                try:
                    answer = await _exchange(connection, port, path, body, headers, keep_alive=True)
                except (OSError, UpstreamError) as exc:
                    connection.close()
                    # The server closed this idle connection as we sent on it, so it never read
                    # the request: send it once more on a new connection (what browsers and
                    # urllib3 do). A new connection that fails is the server's failure.
                    if reused and not connection.answered:
                        continue
                    if isinstance(exc, UpstreamError):
                        raise
                    raise UpstreamError(f"{HOST}:{port} broke off the answer: {exc}") from exc
                except BaseException:
                    # Late (TimeoutError) or cancelled mid-answer: the connection is in an
                    # unknown state, so it goes.
                    connection.close()
                    raise
                self._give_back(port, connection)
                return answer

    async def close(self) -> None:
        """Close every idle connection."""
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        idle = [c for connections in self._idle.values() for c in connections]
        self._idle.clear()
        for connection in idle:
            await _closed(connection)

    def idle_count(self, port: int) -> int:
        """Idle connections kept for `port` (for tests and metrics)."""
        return len(self._idle.get(port, []))

    def _take(self, port: int) -> _Connection | None:
        connections = self._idle.get(port)
        now = time.monotonic()
        while connections:
            connection = connections.pop()  # the most recently used: the least likely closed
            if connection.reusable(now):
                return connection
            connection.close()
        return None

    def _give_back(self, port: int, connection: _Connection) -> None:
        if not connection.keep:
            connection.close()  # the server asked to close it (gunicorn's sync workers do)
            return
        connections = self._idle.setdefault(port, [])
        if len(connections) >= MAX_IDLE_PER_PORT:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        connection.answered = False
        connections.append(connection)
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(IDLE_SECONDS, self._expire)

    def _expire(self) -> None:
        """Close connections idle too long or closed by their server (e.g. a stopped server,
        whose port may never be asked for again)."""
        self._sweep = None
        now = time.monotonic()
        for port, connections in list(self._idle.items()):
            kept = [c for c in connections if c.reusable(now)]
            for connection in connections:
                if connection not in kept:
                    connection.close()
            if kept:
                self._idle[port] = kept
            else:
                del self._idle[port]
        if self._idle:
            self._sweep = asyncio.get_running_loop().call_later(IDLE_SECONDS, self._expire)


async def _connect(port: int) -> _Connection:
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
    except OSError as exc:
        raise UpstreamError(f"cannot connect to {HOST}:{port}: {exc.strerror or exc}") from exc
    return _Connection(reader, writer)


async def _closed(connection: _Connection) -> None:
    connection.close()
    with contextlib.suppress(OSError):
        await connection.writer.wait_closed()


async def _exchange(
    connection: _Connection,
    port: int,
    path: str,
    body: bytes | bytearray,
    headers: Iterable[tuple[bytes, bytes]],
    keep_alive: bool,
) -> UpstreamResponse:
    lines = [
        b"POST %s HTTP/1.1\r\nhost: %s:%d\r\ncontent-length: %d\r\n"
        % (path.encode(), HOST.encode(), port, len(body))
    ]
    if not keep_alive:
        lines.append(b"connection: close\r\n")
    for name, value in headers:
        if b"\r" in value or b"\n" in value or b"\r" in name or b"\n" in name:
            raise UpstreamError(f"header {name!r} holds a line break")
        lines.append(b"%s: %s\r\n" % (name, value))
    lines.append(b"\r\n")
    head = b"".join(lines)
    writer = connection.writer
    connection.keep = False
    if len(body) <= _WRITE_SIZE:
        writer.write(head + body)  # one send for the usual small request
    else:
        # A large body goes in slices with a drain after each: one `write(head + body)` would
        # copy it twice (the join, then asyncio's send buffer when the server reads slower).
        writer.write(head)
        with memoryview(body) as view:
            for start in range(0, len(view), _WRITE_SIZE):
                writer.write(view[start : start + _WRITE_SIZE])
                await writer.drain()
    answer = _Answer()
    parser = answer.parser
    assert parser is not None
    while not answer.done:
        data = await connection.reader.read(_READ_SIZE)
        if not data:
            if answer.head_done and not answer.framed:
                break  # an answer whose body ends with the connection
            raise UpstreamError(f"{HOST}:{port} closed the connection before answering")
        connection.answered = True
        try:
            parser.feed_data(data)
        except httptools.HttpParserError as exc:
            raise UpstreamError(f"{HOST}:{port} sent an answer that is not HTTP: {exc}") from exc
    status = parser.get_status_code()
    answer.parser = None  # no cycle left for the garbage collector
    # Reused only when the answer ended by its framing and the server keeps the connection.
    connection.keep = answer.done and keep_alive and answer.keep_alive
    return UpstreamResponse(status, answer.headers, b"".join(answer.chunks))
