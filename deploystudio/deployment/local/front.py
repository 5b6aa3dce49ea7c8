"""An endpoint's front: the one scoring URI (`http://127.0.0.1:PORT/score`) before its deployments.

Run as its own process, one per endpoint (started detached by the local target):

    python -m deploystudio.deployment.local.front --db DB_PATH --endpoint NAME --port PORT

It behaves like an Azure ML managed online endpoint's front door: key auth (primary and
secondary), weighted traffic, the `azureml-model-deployment` header, mirrored traffic, Azure's
status codes for its own errors (401, 404, 408, 413, 415, 424, 503), the model's 4xx passed through
unchanged, `x-request-id` and `azureml-model-deployment` on every answer, per-deployment
counters at `GET /_deploystudio/metrics`, and health checks (health.py) after which a crashed
or hung deployment is restarted with backoff, or left `failed` in a crash loop (healing.py).
Routing decisions live in routing.py, counters in metrics.py, answers and forwarded headers in
front_answers.py, body reading in request_body.py, the bounded log in front_logging.py.

The store is the one source of truth: the front re-reads it whenever SQLite's `data_version`
says another connection committed (checked 4 times a second, costs one PRAGMA), so a traffic
change, a regenerated key or a new deployment is live within half a second, with no restart.

Why one front per endpoint rather than one gateway: each endpoint then has its own port, as
each Azure endpoint has its own host name, and stopping or crashing one endpoint touches no
other. Why aiohttp for the server: it is installed already (with MLflow), asyncio-based with a
C HTTP parser, and the front stays one thread with no locks; it runs on uvloop's event loop
when uvloop is installed (front_process.py). Requests to the deployment servers go through
upstream.py (httptools) on kept-alive connections, or front_batching.py for a batching deployment.
What the front costs per request, and where it goes, is measured in bench/endpoint.py
(`front CPU`) and noted in issue 16.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import signal
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiohttp import web

from deploystudio.deployment.base import AuthMode, DeploymentState, Runtime
from deploystudio.deployment.local import front_logging, upstream
from deploystudio.deployment.local.front_answers import (
    DROP_RESPONSE,
    MODEL_REASON_HEADER,
    MODEL_STATUS_HEADER,
    REQUEST_ID_HEADER,
    forwarded_headers,
    header_safe,
    json_response,
    model_message,
    tag_request_id,
    with_input_data_hint,
)
from deploystudio.deployment.local.front_batching import Batcher
from deploystudio.deployment.local.front_process import check_loopback, loop_factory
from deploystudio.deployment.local.healing import Healer, restart_count
from deploystudio.deployment.local.health import HealthMonitor, log_tail
from deploystudio.deployment.local.metrics import FrontMetrics
from deploystudio.deployment.local.request_body import (
    BODY_READ_SECONDS,
    BodySlot,
    BodyTooLarge,
    LargeBodyGate,
    read_body,
)
from deploystudio.deployment.local.routing import (
    DEPLOYMENT_HEADER,
    DeploymentView,
    RoutingTable,
    build_table,
    is_authorized,
    route,
)
from deploystudio.deployment.store import DeploymentStore
from deploystudio.errors import (
    DeploymentNotFoundError,
    DeployStudioError,
    EndpointFrontError,
    EndpointNotFoundError,
    StateTransitionError,
)

DEFAULT_HOST = "127.0.0.1"
# The body is buffered in memory (and shared with a mirrored copy), so it needs a cap. Azure's
# managed online endpoint limits list none for the request body (only a 5 MBPS bandwidth quota
# and the request timeout), so the cap is ours: 100 MB is far above any 1-row or batch-of-rows
# JSON payload and still bounds the memory one caller can take. `--max-body-bytes` changes it.
DEFAULT_MAX_BODY_BYTES = 100 * 1024 * 1024
REFRESH_SECONDS = 0.25
# A full re-read now and then, whatever data_version says (e.g. the file was replaced).
FULL_RELOAD_SECONDS = 5.0
SHUTDOWN_GRACE_SECONDS = 3.0
# A connection must send its request headers within this time, and may stay idle between
# requests as long (gunicorn's default keep-alive is 2 s, uvicorn's 5 s).
HEADER_SECONDS = 10.0
# Mirrored copies in flight at once; beyond that copies are dropped (and counted), so a slow
# mirror deployment cannot make the front hoard request bodies.
MAX_MIRROR_IN_FLIGHT = 64
METRICS_PATH = "/_deploystudio/metrics"

log = logging.getLogger("deploystudio.front")
Body = bytes | bytearray
T = TypeVar("T")


class Front:
    """The front of one endpoint: its routing table, client sessions, counters and checks."""

    def __init__(
        self,
        store: DeploymentStore,
        endpoint: str,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        rng: random.Random | None = None,
        body_seconds: float = BODY_READ_SECONDS,
    ) -> None:
        self._store = store
        self._endpoint = endpoint
        self._max_body = max_body_bytes
        self._body_seconds = body_seconds
        self._rng = rng or random.Random()
        self._metrics = FrontMetrics()
        # One thread for SQLite: its connections must stay on the thread that opened them, and
        # the event loop must never wait on a busy database.
        self._db_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="front-store")
        self._version_conn: sqlite3.Connection | None = None
        self._data_version: int | None = None
        self._table: RoutingTable | None = None
        self._table_version = 0
        self._loaded_at = 0.0
        self._loaded_at_wall: datetime | None = None
        self._probe: aiohttp.ClientSession | None = None
        self._upstream = upstream.Upstream()
        # Requests to deployments with max_batch_size > 1 go through it (front_batching.py).
        self._batcher = Batcher(self._upstream)
        self._large_bodies = LargeBodyGate()
        self._health: HealthMonitor | None = None
        self._healer: Healer | None = None
        self._tasks: set[asyncio.Task] = set()
        self._mirrors: set[asyncio.Task] = set()
        self.port: int | None = None
        self.stopped = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Read the store (raises EndpointNotFoundError) and start the background work."""
        # Scoring requests go through upstream.py; aiohttp's client is used for the probes only.
        self._probe = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=True)
        )
        self._health = HealthMonitor(self._probe, self._deployment_failed)
        self._healer = Healer(self._store, self._endpoint, self._db, self._probe, self.reload)
        await self.reload()
        self._spawn(self._refresh_loop(), "refresh")

    async def close(self) -> None:
        """Stop background work and close the client sessions and the store thread."""
        for task in [*self._tasks, *self._mirrors]:
            task.cancel()
        for task in [*self._tasks, *self._mirrors]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._health is not None:
            await self._health.close()
        if self._probe is not None:
            await self._probe.close()
        await self._batcher.close()
        await self._upstream.close()
        if self._version_conn is not None:
            conn, self._version_conn = self._version_conn, None
            await self._db(conn.close)
        self._db_thread.shutdown(wait=True)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _db(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._db_thread, call)

    # -- configuration -----------------------------------------------------------------------

    @property
    def table(self) -> RoutingTable:
        assert self._table is not None, "start() reads the table first"
        return self._table

    def _read_table(self) -> RoutingTable:
        endpoint = self._store.get_endpoint(self._endpoint)
        deployments = self._store.list_deployments(endpoint.name)
        keys = self._store.get_keys(endpoint.name) if endpoint.auth_mode is AuthMode.KEY else None
        return build_table(endpoint, deployments, keys)

    def _store_changed(self) -> bool:
        if self._version_conn is None:
            self._version_conn = sqlite3.connect(self._store.path, isolation_level=None)
        version = self._version_conn.execute("PRAGMA data_version").fetchone()[0]
        changed, self._data_version = version != self._data_version, version
        return changed

    async def reload(self) -> None:
        """Re-read the endpoint from the store and switch to the new table at once."""
        # Taken before reading: the table then holds every commit made before `loaded_at`.
        read_at, read_at_wall = time.monotonic(), datetime.now(UTC)
        await self._db(self._store_changed)
        table = await self._db(self._read_table)
        previous, self._table = self._table, table
        self._table_version += 1
        self._loaded_at, self._loaded_at_wall = read_at, read_at_wall
        if previous is None or previous.describe() != table.describe():
            described = table.describe()
            states = {name: d["state"] for name, d in described["deployments"].items()}
            log.info(
                "Routing for %s: traffic %s, mirror %s, deployments %s",
                table.endpoint,
                described["traffic"],
                described["mirror"],
                states,
            )
        if previous is not None and previous.keys != table.keys:
            log.info("The keys of %s changed; the new ones apply from now on.", table.endpoint)
        assert self._health is not None
        self._health.update(table)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            try:
                stale = time.monotonic() - self._loaded_at >= FULL_RELOAD_SECONDS
                if await self._db(self._store_changed) or stale:
                    await self.reload()
            except EndpointNotFoundError:
                log.warning("Endpoint %s is no longer in the store: stopping.", self._endpoint)
                self.stopped.set()
                return
            except (sqlite3.Error, OSError, DeployStudioError) as exc:
                # Keep serving with the last table; the next tick tries again.
                log.warning("Could not read the deployment store (%s); keeping the last view.", exc)

    async def _deployment_failed(self, view: DeploymentView, problem: str) -> None:
        """A ready deployment's server died or hung: restart it (healing.py) when its start
        left a launch file; else record it as failed, with its log tail."""
        if self._healer is not None and self._healer.heals(view):
            self._spawn(self._healer.heal(view, problem), f"heal-{view.name}")
            return
        reason = f"The server failed its health check: {problem}."
        tail = log_tail(Path(view.log_path)) if view.log_path else None

        def mark_failed() -> bool:
            # Since this check began, an update may have switched the record to a new server,
            # or the target may be stopping this one (which is why it stopped answering): only
            # a record still ready with the checked server may be marked failed.
            self._store.set_state(
                self._endpoint,
                view.name,
                DeploymentState.FAILED,
                reason=reason,
                log_tail=tail,
                only_if=(DeploymentState.READY, view.pid),
            )
            return True

        try:
            if await self._db(mark_failed):
                log.warning("Marked deployment %s failed: %s", view.name, problem)
        except (StateTransitionError, DeploymentNotFoundError, EndpointNotFoundError) as exc:
            # The target moved or removed the record meanwhile: its decision stands.
            log.info("Did not mark %s failed: %s", view.name, exc)
        with contextlib.suppress(sqlite3.Error, OSError, DeployStudioError):
            await self.reload()

    # -- HTTP --------------------------------------------------------------------------------

    def app(self) -> web.Application:
        # client_max_size makes request.read() refuse a body above the cap while reading it,
        # for callers that send no Content-Length (chunked).
        app = web.Application(client_max_size=self._max_body)
        app.router.add_get("/", self.handle_ready)
        app.router.add_post("/score", self.handle_score)
        app.router.add_get(METRICS_PATH, self.handle_metrics)
        app.on_response_prepare.append(tag_request_id)
        return app

    async def handle_ready(self, request: web.Request) -> web.Response:
        """Readiness of the front itself (the table is read before the port opens)."""
        return web.Response(text="ok")

    async def handle_score(self, request: web.Request) -> web.StreamResponse:
        request_id = request.headers.get(REQUEST_ID_HEADER) or str(uuid.uuid4())
        request[REQUEST_ID_HEADER] = request_id
        table = self.table
        self._metrics.requests += 1
        if not is_authorized(table, request.headers.get("Authorization")):
            return self._own_error(
                401,
                f"Endpoint {table.endpoint!r} requires a key: send 'Authorization: Bearer <key>' "
                "with its primary or secondary key.",
                request_id,
                extra={"WWW-Authenticate": "Bearer"},
            )
        if not request.headers.get("Content-Type", "").strip():
            # MLflow's scoring server fails with a 500 on a request without one (it splits
            # None); the caller's mistake is a 415 with what to send.
            return self._own_error(
                415,
                "The request has no Content-Type: send 'Content-Type: application/json' "
                "(or text/csv where the model's server reads CSV).",
                request_id,
            )
        if request.content_length is not None and request.content_length > self._max_body:
            return self._too_large(request_id)
        slot = None
        if self._large_bodies.needs_slot(request.content_length):
            try:
                slot = await self._large_bodies.enter()
            except TimeoutError:
                return self._own_error(
                    503,
                    "Too many large requests are in flight at this endpoint. Retry later, or "
                    "send fewer rows per request.",
                    request_id,
                    extra={"Retry-After": "5"},
                )
        try:
            return await self._score(request, table, request_id, slot)
        finally:
            if slot is not None:
                slot.let_go()

    async def _score(
        self, request: web.Request, table: RoutingTable, request_id: str, slot: BodySlot | None
    ) -> web.Response:
        try:
            body = await read_body(request, self._max_body, self._body_seconds)
        except BodyTooLarge:
            return self._too_large(request_id)
        except TimeoutError:
            return self._own_error(
                408,
                f"The request body did not arrive within {self._body_seconds:g} s.",
                request_id,
            )
        decision = route(table, request.headers.get(DEPLOYMENT_HEADER), self._rng)
        if not decision.ok:
            assert decision.status is not None and decision.message is not None
            if decision.deployment is not None:
                self._metrics.deployment(decision.deployment.name).record(
                    decision.status,
                    None,
                    server_failed=True,
                    message=decision.message,
                    request_id=request_id,
                )
            return self._own_error(
                decision.status, decision.message, request_id, decision.deployment
            )
        view = decision.deployment
        assert view is not None
        headers = forwarded_headers(request, request_id)
        if decision.mirror is not None:
            self._mirror(decision.mirror, body, headers, request_id, slot)
        return await self._forward(view, body, headers, request_id)

    async def _post(
        self, view: DeploymentView, body: Body, headers: list[tuple[bytes, bytes]]
    ) -> _Outcome:
        """Send one request to `view`'s server; the health monitor hears how it went."""
        assert self._health is not None
        self._health.begin(view.name, view.timeout_seconds)
        started = time.perf_counter()
        answer = None
        try:
            answer = await self._batcher.post(view, body, headers)
            return _Outcome(answer, None, None, _ms_since(started))
        except TimeoutError:
            return _Outcome(None, 408, None, _ms_since(started))
        except upstream.UpstreamError as exc:
            return _Outcome(None, 424, str(exc), _ms_since(started))
        finally:
            self._health.end(view.name, answered=answer is not None)

    async def _forward(
        self, view: DeploymentView, body: Body, headers: list[tuple[bytes, bytes]], request_id: str
    ) -> web.Response:
        counters = self._metrics.deployment(view.name)
        outcome = await self._post(view, body, headers)
        answer, latency = outcome.answer, outcome.latency_ms
        if answer is None:
            if outcome.failure_status == 408:
                message = (
                    f"Deployment {view.name!r} did not answer within its request timeout of "
                    f"{view.timeout_seconds * 1000:.0f} ms. Make the model faster, or raise "
                    "request_timeout_ms in the deployment's settings."
                )
                model_status = None
            else:
                message = (
                    f"The server of deployment {view.name!r} did not answer ({outcome.failure}). "
                    "Check its log; restart it if it stopped."
                )
                model_status = 502  # what a gateway says of a server that did not answer
            status = outcome.failure_status or 424
            counters.record(
                status, latency, server_failed=True, message=message, request_id=request_id
            )
            return self._own_error(status, message, request_id, view, model_status=model_status)
        status, payload = answer.status, answer.body
        if status >= 500:
            detail = model_message(payload)
            message = f"The model of deployment {view.name!r} failed with status {status}: {detail}"
            counters.record(status, latency, message=message, request_id=request_id)
            self._metrics.front_error(424)
            return json_response(
                424,
                {"message": message, "model_status_code": status},
                request_id,
                view.name,
                {MODEL_STATUS_HEADER: str(status), MODEL_REASON_HEADER: header_safe(detail)},
            )
        if status == 400 and view.runtime is Runtime.MLFLOW:
            payload = with_input_data_hint(payload, body) or payload
        counters.record(
            status,
            latency,
            message=model_message(payload) if status >= 400 else None,
            request_id=request_id,
        )
        # 2xx and the model's own 4xx go back as the server sent them (MLflow's refusal of an
        # input_data body with a hint).
        response_headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in answer.headers
            if name not in DROP_RESPONSE
        ]
        response_headers += [(REQUEST_ID_HEADER, request_id), (DEPLOYMENT_HEADER, view.name)]
        return web.Response(body=payload, status=status, headers=response_headers)

    def _mirror(
        self,
        view: DeploymentView,
        body: Body,
        headers: list[tuple[bytes, bytes]],
        request_id: str,
        slot: BodySlot | None,
    ) -> None:
        if len(self._mirrors) >= MAX_MIRROR_IN_FLIGHT:
            self._metrics.mirror_dropped += 1
            return
        task = asyncio.create_task(self._send_mirror(view, body, headers, request_id))
        self._mirrors.add(task)
        task.add_done_callback(self._mirrors.discard)
        if slot is not None:
            # The copy holds the body too: the slot is free when both are done.
            slot.hold()
            task.add_done_callback(lambda _: slot.let_go())

    async def _send_mirror(
        self, view: DeploymentView, body: Body, headers: list[tuple[bytes, bytes]], request_id: str
    ) -> None:
        """Send a copy to the mirror deployment; only its counters ever see the outcome."""
        counters = self._metrics.deployment(view.name)
        if not view.ready:
            counters.record(503, None, mirrored=True, server_failed=True, request_id=request_id)
            return
        outcome = await self._post(view, body, headers)
        if outcome.answer is None:
            counters.record(
                outcome.failure_status or 424,
                outcome.latency_ms,
                mirrored=True,
                server_failed=True,
                message=outcome.failure or "no answer within the request timeout",
                request_id=request_id,
            )
            return
        status, payload = outcome.answer.status, outcome.answer.body
        counters.record(
            status,
            outcome.latency_ms,
            mirrored=True,
            message=model_message(payload) if status >= 400 else None,
            request_id=request_id,
        )

    async def handle_metrics(self, request: web.Request) -> web.Response:
        table = self.table
        if not is_authorized(table, request.headers.get("Authorization")):
            return self._own_error(
                401,
                f"The metrics of endpoint {table.endpoint!r} require its key: send "
                "'Authorization: Bearer <key>'.",
                request.headers.get(REQUEST_ID_HEADER) or str(uuid.uuid4()),
                extra={"WWW-Authenticate": "Bearer"},
            )
        assert self._health is not None
        names = [view.name for view in table.deployments.values()]
        snapshot = self._metrics.snapshot(names)
        for name, counters in snapshot["deployments"].items():
            view = table.find(name)
            assert view is not None
            counters["state"] = view.state.value
            counters["reason"] = view.reason
            counters["port"] = view.port
            counters["health"] = self._health.status(name)
            counters["restarts"] = restart_count(view.log_path)
        config = table.describe()
        config.pop("deployments")
        body = {
            "endpoint": table.endpoint,
            "front": {"pid": os.getpid(), "port": self.port},
            "config": {
                **config,
                "version": self._table_version,
                "loaded_at": self._loaded_at_wall.isoformat() if self._loaded_at_wall else None,
            },
            **snapshot,
            "mirror_in_flight": len(self._mirrors),
            "batching": self._batcher.counts(),
        }
        return web.json_response(body)

    def _own_error(
        self,
        status: int,
        message: str,
        request_id: str,
        deployment: DeploymentView | None = None,
        extra: dict[str, str] | None = None,
        model_status: int | None = None,
    ) -> web.Response:
        self._metrics.front_error(status)
        headers = dict(extra or {})
        if model_status is not None:
            headers[MODEL_STATUS_HEADER] = str(model_status)
            headers[MODEL_REASON_HEADER] = header_safe(message)
        name = deployment.name if deployment is not None else None
        return json_response(status, {"message": message}, request_id, name, headers)

    def _too_large(self, request_id: str) -> web.Response:
        return self._own_error(
            413,
            f"The request body is larger than this endpoint's limit of {self._max_body:,} bytes. "
            "Send fewer rows per request.",
            request_id,
        )


@dataclass(frozen=True)
class _Outcome:
    """How one request to a deployment server went: its answer, or the front's status for it
    (408 late, 424 no answer) with what happened."""

    answer: upstream.UpstreamResponse | None
    failure_status: int | None
    failure: str | None
    latency_ms: float


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


# -- process -------------------------------------------------------------------------------


async def serve(
    db_path: Path,
    endpoint: str,
    port: int,
    host: str = DEFAULT_HOST,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    header_seconds: float = HEADER_SECONDS,
    body_seconds: float = BODY_READ_SECONDS,
) -> None:
    """Serve `endpoint`'s front on host:port until SIGTERM or SIGINT, then stop gracefully."""
    check_loopback(host)
    if not db_path.is_file():
        raise EndpointFrontError(
            f"The deployment store {db_path} does not exist. Create the endpoint first."
        )
    store = DeploymentStore(db_path, actor="endpoint-front")
    front = Front(store, endpoint, max_body_bytes, body_seconds=body_seconds)
    try:
        await front.start()
    except BaseException:
        await front.close()
        raise
    # keepalive_timeout also closes a connection whose request headers are not complete by
    # then (aiohttp arms it when the connection opens): the front's timeout for slow headers.
    runner = web.AppRunner(
        front.app(), access_log=None, handle_signals=False, keepalive_timeout=header_seconds
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, shutdown_timeout=SHUTDOWN_GRACE_SECONDS)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        await front.close()
        raise EndpointFrontError(
            f"The front of endpoint {endpoint!r} cannot listen on {host}:{port} ({exc}). "
            "Another program may use that port: start the endpoint again to get another one."
        ) from exc
    front.port = port
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, front.stopped.set)
    log.info(
        "Front of endpoint %s listening on http://%s:%d (pid %d)", endpoint, host, port, os.getpid()
    )
    try:
        await front.stopped.wait()
        log.info("Stopping: finishing requests in flight (up to %.0f s)", SHUTDOWN_GRACE_SECONDS)
    finally:
        # The runner stops accepting first and lets requests in flight finish.
        await runner.cleanup()
        await front.close()
    log.info("Stopped.")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m deploystudio.deployment.local.front",
        description="Serve one endpoint's scoring URI in front of its deployment servers.",
    )
    parser.add_argument("--db", required=True, type=Path, help="the deployment store (SQLite)")
    parser.add_argument("--endpoint", required=True, help="the endpoint's name")
    parser.add_argument("--port", required=True, type=int, help="the port to listen on")
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help="a loopback address (default: %(default)s)"
    )
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=DEFAULT_MAX_BODY_BYTES,
        help="largest request body accepted; larger ones get 413 (default: %(default)s)",
    )
    parser.add_argument(
        "--header-seconds",
        type=float,
        default=HEADER_SECONDS,
        help="time a connection has to send its request headers (default: %(default)s)",
    )
    parser.add_argument(
        "--body-seconds",
        type=float,
        default=BODY_READ_SECONDS,
        help="time a request has to send its whole body (default: %(default)s)",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])
    args = parser.parse_args(argv)
    front_logging.configure(args.log_level)
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(
                serve(
                    args.db,
                    args.endpoint,
                    args.port,
                    args.host,
                    max(1, args.max_body_bytes),
                    max(0.1, args.header_seconds),
                    max(0.1, args.body_seconds),
                )
            )
    except DeployStudioError as exc:
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
