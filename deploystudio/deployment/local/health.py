"""Health checks of an endpoint's deployment servers, run by its front.

One watcher per running server (name, pid, port): each second it checks that the process is
alive and probes the server's readiness URL. A ready deployment whose process has exited, or
that has answered nothing for `HUNG_AFTER_SECONDS`, is reported once through `on_failure`; the
front then moves it to `failed` in the store. With a probe timeout of 2 s a hung server is
reported 6-8 s after it stops answering, a crashed one within about a second: both within the
10 s the issue allows.

Busy is not hung: a server with one sync worker answers no probe while it scores a long
request. Scoring answers count as signs of life too (the front reports them through `begin`
and `end`), and a server is never called hung while a request to it is still within its
request timeout; the timeout itself then answers the caller (408).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from deploystudio.deployment.base import DeploymentState
from deploystudio.deployment.local.routing import DeploymentView, RoutingTable

PROBE_INTERVAL_SECONDS = 1.0
PROBE_TIMEOUT_SECONDS = 2.0
HUNG_AFTER_SECONDS = 6.0
WATCHED_STATES = frozenset({DeploymentState.STARTING, DeploymentState.READY})
LOG_TAIL_LINES = 30
_LOG_TAIL_BYTES = 64 * 1024

log = logging.getLogger(__name__)

FailureHandler = Callable[[DeploymentView, str], Awaitable[None]]


def process_alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped by its parent, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines of a server log, worded as `inference_server.log_tail` words them.

    Not that function itself: importing inference_server imports MLflow (about 3 s), which the
    front, started with every endpoint, must not wait for. Reads only the end of the file.
    """
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - _LOG_TAIL_BYTES))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return "(no server log)"
    tail = text.splitlines()[-lines:]
    return "Server log (last lines):\n" + "\n".join(tail) if tail else "(the server log is empty)"


@dataclass
class _Watch:
    view: DeploymentView
    task: asyncio.Task
    last_ok: float
    healthy: bool | None = None
    last_probe_at: float | None = None
    last_problem: str | None = None


class HealthMonitor:
    """Watches the servers of a routing table; `update` follows each new table."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        on_failure: FailureHandler,
        interval: float = PROBE_INTERVAL_SECONDS,
        probe_timeout: float = PROBE_TIMEOUT_SECONDS,
        hung_after: float = HUNG_AFTER_SECONDS,
    ) -> None:
        self._session = session
        self._on_failure = on_failure
        self._interval = interval
        self._timeout = aiohttp.ClientTimeout(total=probe_timeout)
        self._hung_after = hung_after
        self._watches: dict[tuple[str, int | None, int | None], _Watch] = {}
        # Per deployment (lower-case name): scoring requests in flight, the latest moment one of
        # them may still legitimately be waiting, and when the server last answered one.
        self._in_flight: dict[str, int] = {}
        self._busy_until: dict[str, float] = {}
        self._last_answer: dict[str, float] = {}

    def begin(self, name: str, timeout: float) -> None:
        """A scoring request to `name` starts; it may take up to `timeout` seconds."""
        key = name.lower()
        self._in_flight[key] = self._in_flight.get(key, 0) + 1
        self._busy_until[key] = max(self._busy_until.get(key, 0.0), time.monotonic() + timeout)

    def end(self, name: str, answered: bool) -> None:
        """A scoring request to `name` ended; `answered` if the server sent any HTTP answer."""
        key = name.lower()
        left = self._in_flight.get(key, 1) - 1
        if left > 0:
            self._in_flight[key] = left
        else:
            self._in_flight.pop(key, None)
            self._busy_until.pop(key, None)
        if answered:
            self._last_answer[key] = time.monotonic()

    def update(self, table: RoutingTable) -> None:
        """Start watchers for new running servers; stop those no longer starting or ready."""
        wanted = {
            (v.name.lower(), v.pid, v.port): v
            for v in table.deployments.values()
            if v.state in WATCHED_STATES and v.port is not None
        }
        for key in list(self._watches):
            if key not in wanted:
                task = self._watches.pop(key).task
                # The watcher that reported a failure is the caller of this update (through
                # the front's reload): it ends by itself.
                if task is not asyncio.current_task():
                    task.cancel()
        for key, view in wanted.items():
            watch = self._watches.get(key)
            if watch is not None:
                if watch.view.state is not view.state:
                    # Just became ready: the target saw it answer, so the silence starts now.
                    watch.last_ok = time.monotonic()
                watch.view = view
                continue
            task = asyncio.create_task(self._watch(key), name=f"health-{view.name}")
            self._watches[key] = _Watch(view=view, task=task, last_ok=time.monotonic())

    def status(self, name: str) -> dict[str, Any]:
        """The last probe's outcome for deployment `name`, for the metrics page."""
        for (key_name, _, _), watch in self._watches.items():
            if key_name == name.lower():
                ago = None
                if watch.last_probe_at is not None:
                    ago = round(time.monotonic() - watch.last_probe_at, 1)
                return {
                    "healthy": watch.healthy,
                    "seconds_since_probe": ago,
                    "problem": watch.last_problem,
                }
        return {"healthy": None, "seconds_since_probe": None, "problem": None}

    async def close(self) -> None:
        watches = list(self._watches.values())
        self._watches.clear()
        for watch in watches:
            watch.task.cancel()
        for watch in watches:
            with contextlib.suppress(asyncio.CancelledError):
                await watch.task

    async def _watch(self, key: tuple[str, int | None, int | None]) -> None:
        while True:
            started = time.monotonic()
            watch = self._watches.get(key)
            if watch is None:
                return
            failure = await self._check(watch)
            if failure is not None and watch.view.state is DeploymentState.READY:
                log.warning("Deployment %s failed its health check: %s", watch.view.name, failure)
                # Reported once: the front moves the record to failed, and the next table stops
                # this watcher. Only ready -> failed is the front's to make.
                await self._on_failure(watch.view, failure)
                return
            await asyncio.sleep(max(0.0, self._interval - (time.monotonic() - started)))

    async def _check(self, watch: _Watch) -> str | None:
        view = watch.view
        if view.pid is not None and not process_alive(view.pid):
            watch.healthy, watch.last_problem = False, "the server process exited"
            return f"the server process (pid {view.pid}) exited"
        ok, problem = await self._probe(view)
        now = time.monotonic()
        watch.last_probe_at, watch.healthy = now, ok
        if ok:
            watch.last_ok, watch.last_problem = now, None
            return None
        watch.last_problem = problem
        key = view.name.lower()
        silent = now - max(watch.last_ok, self._last_answer.get(key, 0.0))
        busy = key in self._in_flight and now < self._busy_until[key]
        if silent >= self._hung_after and not busy:
            return (
                f"the server did not answer health checks for {silent:.0f} s "
                f"({view.health_url}: {problem})"
            )
        return None

    async def _probe(self, view: DeploymentView) -> tuple[bool, str]:
        try:
            async with self._session.get(view.health_url, timeout=self._timeout) as response:
                await response.read()
                if response.status == 200:
                    return True, ""
                return False, f"answered {response.status}"
        except TimeoutError:
            return False, f"no answer within {self._timeout.total:.0f} s"
        except aiohttp.ClientError as exc:
            return False, str(exc) or type(exc).__name__
