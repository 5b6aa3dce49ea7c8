"""The detached processes of local endpoints: start them, recognise them by pid, probe, stop.

A record in the store outlives the process that wrote it, so a pid read back later may by then
belong to another program. A pid counts as ours only while its command line still names our
server and its port (as `inference_server` checks for its gunicorn servers), and only such a
process is ever signalled. Each server is one process group (it runs in its own session), so
stopping it stops its workers too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from deploystudio import inference_server
from deploystudio.deployment.local.crashes import CrashWatch, native_crash
from deploystudio.errors import ScoringServerError

HOST = inference_server.HOST
MLFLOW_APP = "mlflow.pyfunc.scoring_server.app:app"
# MLflow 2's scoring server (in a model's own environment): gunicorn with its WSGI app.
MLFLOW_2_APP = "mlflow.pyfunc.scoring_server.wsgi:app"
FRONT_MODULE = "deploystudio.deployment.local.front"
SERVER_LOG = "server.log"
FRONT_LOG = "front.log"
# Beside a deployment server's log: how it was started, for the front to start it again.
RELAUNCH_FILE = "relaunch.json"
STOP_GRACE_SECONDS = 3.0
PROBE_SECONDS = 2.0
_POLL_SECONDS = 0.1


class ServerKind(StrEnum):
    """What a process serves: a deployment in one of the two runtimes, or an endpoint's front."""

    AZUREML = "azureml"
    MLFLOW = "mlflow"
    FRONT = "front"


# The URL path that answers 200 once the process can serve.
READY_PATHS = {ServerKind.AZUREML: "/", ServerKind.MLFLOW: "/ping", ServerKind.FRONT: "/"}
# Where each kind takes requests.
SCORE_PATHS = {
    ServerKind.AZUREML: "/score",
    ServerKind.MLFLOW: "/invocations",
    ServerKind.FRONT: "/score",
}


@dataclass(frozen=True)
class ServerProcess:
    """A detached server: `pid` is the leader of its process group."""

    kind: ServerKind
    pid: int
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def score_url(self) -> str:
        return self.url + SCORE_PATHS[self.kind]

    def is_ours(self) -> bool:
        """Whether the pid is alive (not a zombie) and still this server on this port."""
        if self.kind is ServerKind.AZUREML:
            return inference_server.is_running(self._handle())
        command = _command_line(self.pid)
        return command is not None and _matches(self.kind, self.port, command)

    def answers(self, timeout: float = PROBE_SECONDS) -> bool:
        """Whether its readiness URL answers 200 within `timeout` seconds."""
        try:
            url = self.url + READY_PATHS[self.kind]
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError, TimeoutError):
            return False

    def stop(self, grace_seconds: float = STOP_GRACE_SECONDS) -> bool:
        """SIGTERM the group, SIGKILL it after `grace_seconds`; True if it was running.

        A pid that is no longer this server is left alone. Idempotent.
        """
        if not self.is_ours():
            return self._kill_leftovers()
        if self.kind is ServerKind.AZUREML:
            inference_server.stop(self._handle(), grace_seconds)
            return True
        _signal_group(self.pid, signal.SIGTERM)
        if not _wait_gone(self.pid, grace_seconds):
            _signal_group(self.pid, signal.SIGKILL)
            _wait_gone(self.pid, 10.0)
        return True

    def _kill_leftovers(self) -> bool:
        """SIGKILL what is left of the group once its leader died (kill -9, OOM): a gunicorn
        worker busy in init() notices only later, and meanwhile holds the listening socket.

        The kernel gives no new process the pid of a group that still has members, and only
        processes of the server's own session (it called setsid) can join its group, so every
        member is a leftover of this server, whatever its command line: uvicorn's and
        multiprocessing's workers do not repeat the server's.
        """
        if _command_line(self.pid) is not None:
            return False  # the leader lives: another program, or a zombie not yet reaped
        left = _group_members(self.pid)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return bool(left)

    def _handle(self) -> inference_server.ServerHandle:
        return inference_server.ServerHandle(pid=self.pid, port=self.port, log_path=self.log_path)


def spawn_detached(
    kind: ServerKind,
    command: list[str],
    env: dict[str, str],
    cwd: Path,
    log_path: Path,
    port: int,
    relaunch_file: Path | None = None,
) -> ServerProcess:
    """Start `command` detached (see `inference_server.spawn_detached`), outliving this process."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    pid = inference_server.spawn_detached(
        command, env, cwd, log_path, what=f"{kind} process", relaunch_file=relaunch_file
    )
    return ServerProcess(kind=kind, pid=pid, port=port, log_path=log_path)


def wait_ready(
    process: ServerProcess,
    timeout_seconds: float,
    progress: Callable[[str], None] | None = None,
    what: str = "server",
) -> float:
    """Block until the process answers its readiness URL; return the seconds it took.

    Raises ScoringServerError (with the log tail) when the process exits first or is not ready
    within `timeout_seconds`; the caller stops it.
    """
    started = time.monotonic()
    deadline = started + timeout_seconds
    if progress:
        progress(f"Waiting for the {what} on {process.url} (pid {process.pid})")
    last_report = started
    crashes = CrashWatch(process.log_path)
    while True:
        if not process.is_ours():
            try:
                crash = native_crash(process.log_path.read_text(errors="replace"))
            except OSError:
                crash = None
            how = f": it was {crash}" if crash else ""
            raise ScoringServerError(
                f"The {what} stopped before it was ready{how}.\n\n"
                f"{inference_server.log_tail(process.log_path)}"
            )
        looping = crashes.repeated()
        if looping:
            # Its supervisor would start worker after worker until the timeout: the second
            # death says the model will not load.
            raise ScoringServerError(
                f"The {what} crash-looped while starting: {looping} It was stopped at its "
                f"first repeated crash rather than after the {timeout_seconds:.0f} s start "
                f"timeout.\n\n{inference_server.log_tail(process.log_path)}"
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ScoringServerError(
                f"The {what} was not ready within {timeout_seconds:.0f} s: loading the model or "
                "the script's init() may be stuck or slow. Check them, or allow more time."
                f"\n\n{inference_server.log_tail(process.log_path)}"
            )
        # While a model loads the socket accepts but nobody answers: a short probe keeps this
        # loop checking that the process is still alive.
        if process.answers(min(1.0, remaining)):
            if not _listens(process.pid, process.port):
                # Another program took the port between our choice and the server's bind (the
                # server fails to bind and retries): it answered, not our server.
                raise ScoringServerError(
                    f"Port {process.port} on {HOST} is in use by another program, so the {what} "
                    "could not listen there. Start it again: it then gets another port."
                    f"\n\n{inference_server.log_tail(process.log_path)}"
                )
            return time.monotonic() - started
        if progress and time.monotonic() - last_report >= 5:
            last_report = time.monotonic()
            progress(f"Still starting ({last_report - started:.0f} s)")
        time.sleep(min(_POLL_SECONDS, max(deadline - time.monotonic(), 0)))


def our_processes(root: Path) -> Iterator[ServerProcess]:
    """Live servers of ours whose working folder is under `root` (found by scanning /proc).

    Finds what no record names any more, e.g. a server started by an app that died before it
    could write its pid down.
    """
    root = root.resolve()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if not cwd.is_relative_to(root):
            continue
        command = _command_line(pid)
        try:
            leader = os.getpgid(pid) == pid  # workers go with their group leader
        except ProcessLookupError:
            continue
        if command is None or not leader:
            continue
        for kind in ServerKind:
            port = _port_of(kind, command)
            if port is not None and _matches(kind, port, command):
                log = FRONT_LOG if kind is ServerKind.FRONT else SERVER_LOG
                yield ServerProcess(kind, pid, port, cwd / log)
                break


def _command_line(pid: int) -> list[str] | None:
    """The pid's arguments, or None when it is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, ProcessLookupError):
        return None
    if state == "Z" or not raw:
        return None
    return raw.decode(errors="replace").rstrip("\0").split("\0")


def _option(command: list[str], name: str) -> str | None:
    for index, arg in enumerate(command[:-1]):
        if arg == name:
            return command[index + 1]
    return None


def _port_of(kind: ServerKind, command: list[str]) -> int | None:
    if kind is ServerKind.AZUREML:
        bind = _option(command, "--bind") or ""
        value = bind.rpartition(":")[2]
    elif MLFLOW_2_APP in command:
        value = (_option(command, "-b") or "").rpartition(":")[2]
    else:
        value = _option(command, "--port") or ""
    return int(value) if value.isdigit() else None


def _matches(kind: ServerKind, port: int, command: list[str]) -> bool:
    if kind is ServerKind.AZUREML:
        return inference_server.WSGI_APP in command and f"{HOST}:{port}" in command
    if kind is ServerKind.MLFLOW and MLFLOW_2_APP in command:
        return _option(command, "-b") == f"{HOST}:{port}"
    marker = MLFLOW_APP if kind is ServerKind.MLFLOW else FRONT_MODULE
    return marker in command and _option(command, "--port") == str(port)


def _listens(pgid: int, port: int) -> bool:
    """Whether a process of the group `pgid` holds the socket listening on HOST:`port`.

    Read from /proc (no psutil here): the socket's inode in /proc/net/tcp, then the group's
    file descriptors.
    """
    wanted = f"0100007F:{port:04X}"  # 127.0.0.1 as the kernel prints it (little-endian)
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return True  # cannot tell: do not refuse a server that answers
    inodes = {
        f"socket:[{fields[9]}]"
        for fields in (line.split() for line in lines)
        if fields[1] == wanted and fields[3] == "0A"  # 0A: LISTEN
    }
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != pgid:
                continue
            links = {os.readlink(fd) for fd in (entry / "fd").iterdir()}
        except OSError:
            continue
        if links & inodes:
            return True
    return False


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _command_line(pid) is None and not _group_has_live_members(pid):
            return True
        time.sleep(_POLL_SECONDS)
    return False


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of the group `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def _group_has_live_members(pgid: int) -> bool:
    # killpg(pgid, 0) also succeeds for zombies, which init reaps in its own time here.
    return bool(_group_members(pgid))
