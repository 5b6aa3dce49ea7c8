"""Self-healing of local deployments: the endpoint's front restarts a server that died or hung.

Why the front: it is the one long-lived process of an endpoint, it already probes each of its
deployments every second (health.py), and it runs whether or not the app or a CLI does. What
a restart needs it finds on disk: every start writes its launch (command, environment, folder)
to `relaunch.json` beside the server's log, so the front, which runs without our environment,
starts the very same server again: same model files, score.py and variables, in the same run
folder (the log goes on), on a new port.

The policy follows Kubernetes' liveness probes, which restart Azure's managed deployments:
- a ready deployment whose server exited, or stopped answering (health.py's hung delay), is
  restarted after a backoff of 1, 2 then 4 s; its old process group is killed first, so
  nothing of it keeps the port;
- restarts are counted in the run folder (`restarts.json`): the front's metrics, the
  Endpoints page and `endpoint show` show the count, and a manual start begins at 0;
- a failure after MAX_RESTARTS restarts within CRASH_LOOP_SECONDS is a crash loop: the
  deployment stays failed with the reason and the log tail, until someone restarts it.

While it restarts, the record says so: `failed` with "restarting ..." while the old server is
stopped and the backoff waits, `starting` with the new pid and port, then `ready`. Every move
is conditional on the record still naming the server the front saw, so a user's stop, update
or restart made meanwhile wins. The front holds the deployment's starter lock throughout: a
reconcile elsewhere leaves the restart alone, and `endpoint restart` can tell it from a
deployment that needs a hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from deploystudio import inference_server
from deploystudio.deployment.base import DeploymentState
from deploystudio.deployment.local.health import log_tail
from deploystudio.deployment.local.processes import (
    READY_PATHS,
    RELAUNCH_FILE,
    ServerKind,
    ServerProcess,
)
from deploystudio.deployment.local.routing import DeploymentView
from deploystudio.deployment.local.starter_lock import starting
from deploystudio.deployment.store import DeploymentStore
from deploystudio.errors import (
    DeploymentNotFoundError,
    DeployStudioError,
    EndpointNotFoundError,
    StateTransitionError,
)

State = DeploymentState
T = TypeVar("T")

RESTARTS_FILE = "restarts.json"
MAX_RESTARTS = 3
CRASH_LOOP_SECONDS = 300.0
BACKOFF_SECONDS = (1.0, 2.0, 4.0)
# How long a restarted server may take to answer: the target's default start timeout.
RESTART_READY_SECONDS = 300.0
_POLL_SECONDS = 0.2
_PROBE_SECONDS = 1.0

log = logging.getLogger(__name__)

DbCall = Callable[[Callable[[], Any]], Awaitable[Any]]


# -- what a start left on disk ------------------------------------------------------------


def run_folder(log_path: str | Path | None) -> Path | None:
    """The run folder of a server (its log's folder), or None when the record names no log."""
    return Path(log_path).parent if log_path else None


def can_restart(log_path: str | Path | None) -> bool:
    """Whether the start of this server wrote how to start it again."""
    folder = run_folder(log_path)
    return folder is not None and (folder / RELAUNCH_FILE).is_file()


def restarts(log_path: str | Path | None) -> list[dict[str, Any]]:
    """The restarts of this run of the server, oldest first: {"at": epoch seconds, "problem"}."""
    folder = run_folder(log_path)
    if folder is None:
        return []
    try:
        entries = json.loads((folder / RESTARTS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def restart_count(log_path: str | Path | None) -> int:
    """How many times the front restarted this run of the server (0 after a manual start)."""
    return len(restarts(log_path))


def _record_restart(folder: Path, problem: str) -> None:
    entries = [*restarts(folder / RESTARTS_FILE), {"at": time.time(), "problem": problem}]
    temporary = folder / f".{RESTARTS_FILE}.tmp"
    temporary.write_text(json.dumps(entries), encoding="utf-8")
    os.replace(temporary, folder / RESTARTS_FILE)  # readers never see half a file


def with_port(spec: dict[str, Any], old: int, new: int) -> dict[str, Any]:
    """The launch `spec` moved from port `old` to `new`.

    The port is in the command (gunicorn's `--bind 127.0.0.1:PORT`, uvicorn's `--port PORT`,
    the sandbox launcher's `--bind PORT`) and, for Azure's server, in SERVER_PORT and
    HEALTH_PORT; nothing else holds it.
    """
    command = list(spec["command"])
    for index, arg in enumerate(command):
        if arg == f"{inference_server.HOST}:{old}":
            command[index] = f"{inference_server.HOST}:{new}"
        elif arg == str(old) and index > 0 and command[index - 1] in ("--port", "--bind"):
            # uvicorn's --port, and the sandbox launcher's --bind (the one port it may bind).
            command[index] = str(new)
    env = {
        key: str(new) if key in ("SERVER_PORT", "HEALTH_PORT") and value == str(old) else value
        for key, value in spec["env"].items()
    }
    return {**spec, "command": command, "env": env}


def relaunch(kind: ServerKind, log_path: str | Path, old_port: int) -> ServerProcess:
    """Start the server of this run folder again, detached, on a new port; return at once.

    Raises ScoringServerError when it cannot be started; OSError/ValueError when the launch
    file is unreadable.
    """
    folder = run_folder(log_path)
    assert folder is not None
    spec = json.loads((folder / RELAUNCH_FILE).read_text(encoding="utf-8"))
    port = inference_server.free_port()
    moved = with_port(spec, old_port, port)
    pid = inference_server.spawn_detached(
        moved["command"],
        moved["env"],
        Path(moved["cwd"]),
        Path(moved["log"]),
        what=f"restarted {kind} server",
        relaunch_file=folder / RELAUNCH_FILE,
    )
    return ServerProcess(kind, pid, port, Path(moved["log"]))


# -- the front's side -----------------------------------------------------------------------


class _Superseded(Exception):
    """Someone else moved or removed the record: the restart stops and leaves it to them."""


class Healer:
    """Restarts the failed servers of one endpoint; run inside its front's event loop.

    `db` runs a call on the front's store thread; `reload` makes the front re-read the store.
    """

    def __init__(
        self,
        store: DeploymentStore,
        endpoint: str,
        db: DbCall,
        session: aiohttp.ClientSession,
        reload: Callable[[], Awaitable[None]],
        backoff: tuple[float, ...] = BACKOFF_SECONDS,
        max_restarts: int = MAX_RESTARTS,
        crash_loop_seconds: float = CRASH_LOOP_SECONDS,
        ready_seconds: float = RESTART_READY_SECONDS,
    ) -> None:
        self._store = store
        self._endpoint = endpoint
        self._db = db
        self._session = session
        self._reload = reload
        self._backoff = backoff
        self._max_restarts = max_restarts
        self._crash_loop_seconds = crash_loop_seconds
        self._ready_seconds = ready_seconds
        self._healing: set[str] = set()

    def heals(self, view: DeploymentView) -> bool:
        """Whether this deployment's failure is the healer's: a server it can start again."""
        return view.port is not None and view.pid is not None and can_restart(view.log_path)

    def busy(self, name: str) -> bool:
        return name.lower() in self._healing

    async def heal(self, view: DeploymentView, problem: str) -> None:
        """Restart `view`'s server until it is ready again or a crash loop is declared."""
        key = view.name.lower()
        if key in self._healing:
            return
        self._healing.add(key)
        try:
            assert view.log_path is not None and view.port is not None
            folder = run_folder(view.log_path)
            assert folder is not None
            with starting(folder.parent):
                await self._heal(view, problem, folder)
        except _Superseded as exc:
            log.info("Left deployment %s alone: %s", view.name, exc)
        finally:
            self._healing.discard(key)
            try:
                await self._reload()
            except Exception as exc:  # the front's refresh loop reads the store again anyway
                log.info("Could not re-read the store after healing %s: %s", view.name, exc)

    async def _heal(self, view: DeploymentView, problem: str, folder: Path) -> None:
        kind = ServerKind(view.runtime.value)
        assert view.log_path is not None and view.port is not None
        current = ServerProcess(kind, view.pid or 0, view.port, Path(view.log_path))
        state = State.READY
        while True:
            since = time.time() - self._crash_loop_seconds
            recent = [r for r in restarts(view.log_path) if r.get("at", 0) > since]
            await asyncio.to_thread(current.stop)
            if len(recent) >= self._max_restarts:
                reason = (
                    f"The server failed its health check: {problem}. It was restarted "
                    f"{len(recent)} times within {self._crash_loop_seconds:.0f} s and keeps "
                    "failing (a crash loop), so it is left stopped: fix the cause the log "
                    "shows, then restart the deployment."
                )
                await self._move(view.name, state, current.pid, State.FAILED, reason, tail=True)
                log.warning("Deployment %s is in a crash loop: left failed.", view.name)
                return
            delay = self._backoff[min(len(recent), len(self._backoff) - 1)]
            reason = (
                f"The server failed its health check: {problem}. The endpoint restarts it "
                f"(restart {len(recent) + 1} of at most {self._max_restarts} in "
                f"{self._crash_loop_seconds:.0f} s) in {delay:.0f} s."
            )
            await self._move(view.name, state, current.pid, State.FAILED, reason, tail=True)
            state = State.FAILED
            log.warning("Restarting deployment %s in %.0f s: %s", view.name, delay, problem)
            await asyncio.sleep(delay)
            await asyncio.to_thread(_record_restart, folder, problem)
            try:
                fresh = await asyncio.to_thread(relaunch, kind, view.log_path, current.port)
            except (DeployStudioError, OSError, ValueError, KeyError) as exc:
                # Not the model's fault but this machine's (no launch file, no process): no
                # point in trying again. failed -> failed is no transition: through stopping.
                reason = (
                    f"The server failed its health check: {problem}. It could not be started "
                    f"again ({exc}): restart the deployment."
                )
                await self._move(view.name, state, current.pid, State.STOPPING, None)
                await self._move(view.name, State.STOPPING, current.pid, State.FAILED, reason)
                return
            try:
                await self._move(view.name, state, current.pid, State.STARTING, None, process=fresh)
            except BaseException:
                await asyncio.to_thread(fresh.stop)
                raise
            current, state = fresh, State.STARTING
            failure = await self._wait_ready(fresh)
            if failure is None:
                await self._move(view.name, state, fresh.pid, State.READY, None)
                log.info(
                    "Deployment %s serves again (pid %d, port %d)", view.name, fresh.pid, fresh.port
                )
                return
            problem = failure

    async def _wait_ready(self, process: ServerProcess) -> str | None:
        """None once the server answers its readiness URL; else what went wrong."""
        url = process.url + READY_PATHS[process.kind]
        timeout = aiohttp.ClientTimeout(total=_PROBE_SECONDS)
        deadline = time.monotonic() + self._ready_seconds
        while time.monotonic() < deadline:
            if not await asyncio.to_thread(process.is_ours):
                return "the restarted server stopped before it was ready"
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with self._session.get(url, timeout=timeout) as response:
                    await response.read()
                    if response.status == 200:
                        return None
            await asyncio.sleep(_POLL_SECONDS)
        return f"the restarted server was not ready within {self._ready_seconds:.0f} s"

    async def _move(
        self,
        name: str,
        state: DeploymentState,
        pid: int | None,
        new_state: DeploymentState,
        reason: str | None,
        *,
        tail: bool = False,
        process: ServerProcess | None = None,
    ) -> None:
        """Move the record to `new_state` if it is still `state` with `pid`; else _Superseded."""
        log_path = process.log_path if process else None
        snapshot = log_tail(log_path) if tail and log_path else None

        def write() -> None:
            current = self._store.get_deployment(self._endpoint, name)
            tail_text = log_tail(Path(current.log_path)) if tail and current.log_path else snapshot
            self._store.set_state(
                self._endpoint,
                name,
                new_state,
                reason=reason,
                log_tail=tail_text,
                pid=process.pid if process else None,
                port=process.port if process else None,
                only_if=(state, pid),
            )

        try:
            await self._db(write)
        except (StateTransitionError, DeploymentNotFoundError, EndpointNotFoundError) as exc:
            raise _Superseded(str(exc)) from None
        with contextlib.suppress(DeployStudioError, OSError):
            await self._reload()
