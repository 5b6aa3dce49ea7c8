"""HTTP/1.1 requests from an endpoint's front to its deployment servers on 127.0.0.1.

h11 (the HTTP/1.1 protocol library uvicorn is built on) does the protocol: framing, content
length or chunked bodies, connection close. Why not aiohttp's client, when the front already
serves with aiohttp: measured on this 2-core machine against the same server, aiohttp's client
spent 0.9-1.2 ms of CPU per request and this 0.6-0.8 ms, and every millisecond the front spends
is taken from the model servers it shares the cores with.

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
from dataclasses import dataclass, field

import h11

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
    """A server's answer: status, headers (names in lower case, as h11 gives them), body."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    protocol: h11.Connection = field(default_factory=lambda: h11.Connection(h11.CLIENT))
    idle_since: float = 0.0
    # Whether any byte of an answer came on it: only a connection that said nothing at all may
    # have been closed by the server before it read the request.
    answered: bool = False

    def reusable(self, now: float) -> bool:
        return not self.reader.at_eof() and now - self.idle_since < IDLE_SECONDS

    def close(self) -> None:
        self.writer.close()


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
        except (OSError, h11.ProtocolError) as exc:
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
                except (OSError, h11.ProtocolError, UpstreamError) as exc:
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
        protocol = connection.protocol
        if protocol.our_state is not h11.DONE or protocol.their_state is not h11.DONE:
            connection.close()  # the server asked to close it (gunicorn's sync workers do)
            return
        connections = self._idle.setdefault(port, [])
        if len(connections) >= MAX_IDLE_PER_PORT:
            connection.close()
            return
        protocol.start_next_cycle()
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
    conn = connection.protocol
    sent = [(b"host", f"{HOST}:{port}".encode()), (b"content-length", str(len(body)).encode())]
    if not keep_alive:
        sent.append((b"connection", b"close"))
    request = h11.Request(method="POST", target=path, headers=[*sent, *headers])
    # The body goes in slices with a drain after each: one `write(head + body)` would copy the
    # body twice (the join, then asyncio's send buffer when the server reads slower).
    writer = connection.writer
    writer.write(conn.send(request))
    with memoryview(body) as view:
        for start in range(0, len(view), _WRITE_SIZE):
            writer.write(conn.send(h11.Data(data=view[start : start + _WRITE_SIZE])))
            await writer.drain()
    writer.write(conn.send(h11.EndOfMessage()))
    response: h11.Response | None = None
    chunks: list[bytes] = []
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await connection.reader.read(_READ_SIZE)
            connection.answered = connection.answered or bool(data)
            conn.receive_data(data)
        elif isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            break
        elif isinstance(event, h11.ConnectionClosed):
            raise UpstreamError(f"{HOST}:{port} closed the connection before answering")
        # InformationalResponse (100 Continue) and anything else: keep reading.
    assert response is not None  # h11 yields the Response before any body event
    return UpstreamResponse(response.status_code, list(response.headers), b"".join(chunks))
