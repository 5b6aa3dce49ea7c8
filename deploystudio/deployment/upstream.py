"""One HTTP/1.1 request from an endpoint's front to a deployment server on 127.0.0.1.

h11 (the HTTP/1.1 protocol library uvicorn is built on) does the protocol: framing, content
length or chunked bodies, connection close. Why not aiohttp's client, when the front already
serves with aiohttp: measured on this 2-core machine against the same server, aiohttp's client
spent 0.9-1.2 ms of CPU per request and this 0.6-0.8 ms, and every millisecond the front spends
is taken from the model servers it shares the cores with. Its connection pool would buy
nothing either: the Azure ML inference server runs gunicorn sync workers, which close the
connection after every answer. So each request opens one loopback connection and asks for it
to be closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

import h11

HOST = "127.0.0.1"
_READ_SIZE = 256 * 1024


class UpstreamError(Exception):
    """The server could not be reached, closed the connection early, or spoke bad HTTP."""


@dataclass(frozen=True)
class UpstreamResponse:
    """A server's answer: status, headers (names in lower case, as h11 gives them), body."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


async def post(
    port: int,
    path: str,
    body: bytes,
    headers: Iterable[tuple[bytes, bytes]],
    timeout: float,
) -> UpstreamResponse:
    """POST `body` to http://127.0.0.1:`port``path`; the whole answer within `timeout` seconds.

    `headers` must not hold Host, Content-Length, Connection or Transfer-Encoding: they are
    set here. Raises TimeoutError when the answer is late, UpstreamError when there is none.
    """
    async with asyncio.timeout(timeout):
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
        except OSError as exc:
            raise UpstreamError(f"cannot connect to {HOST}:{port}: {exc.strerror or exc}") from exc
        try:
            return await _exchange(reader, writer, port, path, body, headers)
        except (OSError, h11.ProtocolError) as exc:
            raise UpstreamError(f"{HOST}:{port} broke off the answer: {exc}") from exc
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def _exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    port: int,
    path: str,
    body: bytes,
    headers: Iterable[tuple[bytes, bytes]],
) -> UpstreamResponse:
    conn = h11.Connection(h11.CLIENT)
    request = h11.Request(
        method="POST",
        target=path,
        headers=[
            (b"host", f"{HOST}:{port}".encode()),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            *headers,
        ],
    )
    writer.write(
        conn.send(request) + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
    )
    response: h11.Response | None = None
    chunks: list[bytes] = []
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(_READ_SIZE))
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
