"""The front's kept-alive connections to deployment servers (`upstream.Upstream`), against real
servers on 127.0.0.1: uvicorn (what MLflow's scoring server runs) and a small h11 server that
can close a connection as gunicorn's sync workers do, or as a server whose keep-alive ran out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import h11
import pytest
import uvicorn

from deploystudio import inference_server
from deploystudio.deployment.local import upstream


async def echo_client_port(scope, receive, send):
    """ASGI app: answers the caller's own port, which tells one connection from another."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    body = json.dumps({"client_port": scope["client"][1]}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def with_uvicorn(call, keep_alive_seconds: int = 5):
    port = inference_server.free_port()
    config = uvicorn.Config(
        echo_client_port,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        timeout_keep_alive=keep_alive_seconds,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        return await call(port)
    finally:
        server.should_exit = True
        await serving


async def client_port(pool: upstream.Upstream, port: int) -> int:
    answer = await pool.post(port, "/invocations", b"{}", [], 5)
    assert answer.status == 200
    return json.loads(answer.body)["client_port"]


def test_requests_to_uvicorn_share_one_kept_alive_connection():
    async def scenario(port):
        pool = upstream.Upstream()
        try:
            ports = [await client_port(pool, port) for _ in range(5)]
            return ports, pool.idle_count(port)
        finally:
            await pool.close()

    ports, idle = asyncio.run(with_uvicorn(scenario))
    assert len(set(ports)) == 1, ports
    assert idle == 1


def test_concurrent_requests_open_connections_that_are_then_reused():
    async def scenario(port):
        pool = upstream.Upstream()
        try:
            first = await asyncio.gather(*(client_port(pool, port) for _ in range(4)))
            second = await asyncio.gather(*(client_port(pool, port) for _ in range(4)))
            return first, second
        finally:
            await pool.close()

    first, second = asyncio.run(with_uvicorn(scenario))
    assert len(set(first)) == 4
    assert set(second) == set(first)


def test_a_connection_uvicorn_closed_while_idle_is_replaced():
    async def scenario(port):
        pool = upstream.Upstream()
        try:
            before = await client_port(pool, port)
            await asyncio.sleep(1.5)  # uvicorn closes it after 1 s of silence
            after = await client_port(pool, port)
            return before, after
        finally:
            await pool.close()

    before, after = asyncio.run(with_uvicorn(scenario, keep_alive_seconds=1))
    assert before != after


# -- a scripted h11 server: what each connection does with each request -------------------


async def with_scripted_server(plan, call):
    """Serve connections in order; `plan[n]` lists, per request on connection n, "ok" (answer
    and keep the connection), "close" (answer with Connection: close, then close), "drop"
    (close without answering) or "hang" (never answer). Returns call(port) and the requests
    each connection read."""
    seen: list[int] = []

    async def handle(reader, writer):
        index = len(seen)
        seen.append(0)
        actions = plan[index] if index < len(plan) else ["ok"] * 100
        conn = h11.Connection(h11.SERVER)
        try:
            for action in actions:
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        data = await reader.read(65536)
                        if not data:
                            return
                        conn.receive_data(data)
                    elif isinstance(event, h11.EndOfMessage):
                        break
                seen[index] += 1
                if action == "drop":
                    return
                if action == "hang":
                    await asyncio.sleep(30)
                headers = [(b"content-length", b"2")]
                if action == "close":
                    headers.append((b"connection", b"close"))
                writer.write(
                    conn.send(h11.Response(status_code=200, headers=headers))
                    + conn.send(h11.Data(data=b"ok"))
                    + conn.send(h11.EndOfMessage())
                )
                await writer.drain()
                if action == "close":
                    return
                conn.start_next_cycle()
        finally:
            writer.close()

    port = inference_server.free_port()
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    try:
        return await call(port), seen
    finally:
        server.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 1)


def run_scripted(plan, call):
    async def main():
        return await with_scripted_server(plan, call)

    return asyncio.run(main())


def test_a_server_that_asks_to_close_is_not_kept():
    async def scenario(port):
        pool = upstream.Upstream()
        try:
            answers = [await pool.post(port, "/score", b"{}", [], 5) for _ in range(3)]
            return [a.body for a in answers], pool.idle_count(port)
        finally:
            await pool.close()

    (bodies, idle), seen = run_scripted([["close"], ["close"], ["close"]], scenario)
    assert bodies == [b"ok"] * 3
    assert idle == 0 and seen == [1, 1, 1]


def test_a_kept_connection_closed_as_the_request_goes_is_retried_once_on_a_new_one():
    async def scenario(port):
        pool = upstream.Upstream()
        try:
            first = await pool.post(port, "/score", b"{}", [], 5)
            second = await pool.post(port, "/score", b"{}", [], 5)
            return first.body, second.body
        finally:
            await pool.close()

    # Connection 0 answers once, then closes on the second request without a word (the race
    # with a server's keep-alive timeout); connection 1 answers it.
    bodies, seen = run_scripted([["ok", "drop"], ["ok"]], scenario)
    assert bodies == (b"ok", b"ok")
    assert seen == [2, 1]


def test_a_new_connection_that_drops_the_request_is_an_upstream_error_not_a_retry():
    async def scenario(port):
        pool = upstream.Upstream()
        try:
            with pytest.raises(upstream.UpstreamError):
                await pool.post(port, "/score", b"{}", [], 5)
        finally:
            await pool.close()

    _, seen = run_scripted([["drop"], ["ok"]], scenario)
    assert seen == [1]  # sent once: the server's own failure is not repeated


def test_a_late_answer_is_a_timeout_and_its_connection_is_not_reused():
    async def scenario(port):
        pool = upstream.Upstream()
        try:
            await pool.post(port, "/score", b"{}", [], 5)
            with pytest.raises(TimeoutError):
                await pool.post(port, "/score", b"{}", [], 0.3)
            assert pool.idle_count(port) == 0
            return (await pool.post(port, "/score", b"{}", [], 5)).body
        finally:
            await pool.close()

    body, seen = run_scripted([["ok", "hang"], ["ok"]], scenario)
    assert body == b"ok" and seen == [2, 1]
