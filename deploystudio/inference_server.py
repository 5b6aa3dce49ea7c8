"""Run the Azure ML inference server (azureml-inference-server-http) on 127.0.0.1.

`azmlinfsrv` always binds 0.0.0.0, so we run the same WSGI app under gunicorn ourselves, with the
environment its launcher (`azureml_inference_server_http.amlserver`) would set. One server is one
process group: the gunicorn master (pid == pgid) and its workers. The server serves `POST /score`
and answers `GET /` once a worker has imported the script and run its `init()`.

Used twice: to validate a scoring script (start, score the example, stop), and for local
deployments (started detached, so the server outlives the app process that started it).

The server runs the script's code, so it runs behind `deploystudio.worker.sandbox`: it reads the
script's folder (which holds the staged model), the model folder and the read roots its caller
adds, writes only its private folder (`PRIVATE_FOLDER` beside the script: HOME, TMPDIR and
gunicorn's worker heartbeat files), binds only its own port, and gets an allow-listed environment.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azureml_inference_server_http import __version__ as AZMLINFSRV_VERSION
from packaging.version import InvalidVersion, Version

from deploystudio.errors import ScoringServerError
from deploystudio.worker.isolation import scrubbed_environment
from deploystudio.worker.sandbox import Access, sandboxed_command

# What a model's own environment needs to run this server (issue 19): our version of it. Not
# our gunicorn: the model's MLflow may cap it (MLflow 2.17: gunicorn<24), and the environment
# keeps the one its packages agree on; `server_command` passes only options that one knows.
SERVER_REQUIREMENT = f"azureml-inference-server-http=={AZMLINFSRV_VERSION}"
SERVER_REQUIREMENTS = (SERVER_REQUIREMENT,)
# gunicorn 25.1 added the control socket (on by default) and --no-control-socket; older ones
# refuse that option ("unrecognized arguments") and open no socket anyway.
CONTROL_SOCKET_SINCE = Version("25.1")
HOST = "127.0.0.1"
WSGI_APP = "azureml_inference_server_http.server.entry:app"
# By path, not as `python:deploystudio.gunicorn_hooks`: the file imports only the standard
# library, so it loads in any interpreter that runs gunicorn, with or without our package.
HOOKS_CONFIG = str(Path(__file__).with_name("gunicorn_hooks.py"))
DEFAULT_LOG_TAIL_LINES = 30
# azmlinfsrv's own default (WORKER_TIMEOUT): gunicorn restarts a worker silent for this long.
DEFAULT_WORKER_TIMEOUT_SECONDS = 300
STOP_GRACE_SECONDS = 3.0
_PROBE_SECONDS = 1.0
# Beside the script: the server's HOME and TMPDIR, the only folder it may write.
PRIVATE_FOLDER = "tmp"
_POLL_SECONDS = 0.1


@dataclass(frozen=True)
class ServerHandle:
    """A started server. `pid` is the gunicorn master and its process group id."""

    pid: int
    port: int
    log_path: Path
    # Only for a server started attached: the Popen that must reap it. A detached server is
    # re-parented to init, which reaps it, so a handle rebuilt from a stored pid works as well.
    process: subprocess.Popen | None = field(default=None, compare=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def score_url(self) -> str:
        return f"{self.url}/score"


# Servers listen on ports below the kernel's ephemeral range. A port the OS picks with bind(0)
# comes from that range, and so does the local port of every outgoing connection on the
# machine: between our choice and the server's own bind, any client's connect() could take it
# (seen under load: "Port 32851 ... is in use by another program"). Below the range, only a
# program that binds that very port can.
_SERVER_PORTS_SPAN = 12000
_PORT_TRIES = 50


def _ephemeral_low() -> int:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text(encoding="ascii")
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, below the ephemeral range when it can be (see
    above), else one the OS picks."""
    high = _ephemeral_low()
    low = max(1024, high - _SERVER_PORTS_SPAN)
    if high - low >= 1000:
        for _ in range(_PORT_TRIES):
            port = random.randrange(low, high)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                try:
                    probe.bind((HOST, port))
                except OSError:
                    continue
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def stage_model(
    model_path: Path,
    models_root: Path,
    model_name: str = "model",
    version: int | str = 1,
    folder_name: str | None = None,
) -> Path:
    """Lay the model out as Azure ML mounts a registered model, and return the folder to use as
    AZUREML_MODEL_DIR: `<models_root>/<model_name>/<version>`, holding the model's own folder
    (`folder_name`, by default the name of `model_path`, as uploaded when registering it).

    The server reads model ids from that layout (else it logs a traceback at every start).
    Files are hard-linked (instant, no space) or copied when linking fails (another file
    system); not symlinked, as MLflow's path check rejects a symlinked model folder.
    """
    source = model_path.resolve()
    if not (source / "MLmodel").is_file():
        raise ScoringServerError(
            f"'{model_path}' has no MLmodel file, so it is not an MLflow model folder."
        )
    model_dir = models_root / model_name / str(version)
    target = model_dir / (folder_name or source.name)
    if target.exists():
        shutil.rmtree(target)
    model_dir.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copytree(source, target, copy_function=os.link)
    except OSError:
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target)
    return model_dir


def server_environment(
    entry_script: Path, model_dir: Path, port: int, workers: int, extra_env: dict[str, str] | None
) -> dict[str, str]:
    """The child's environment: the allow-listed part of ours (`scrubbed_environment`), HOME and
    TMPDIR in its private folder, plus what azmlinfsrv's launcher sets
    (`amlserver.merge_configuration` and `validate_environment_variables`)."""
    private = entry_script.parent / PRIVATE_FOLDER
    env = scrubbed_environment(home=private, temp=private)
    env.update(
        {
            "AML_APP_ROOT": str(entry_script.parent),
            "AZUREML_ENTRY_SCRIPT": str(entry_script),
            "AZUREML_MODEL_DIR": str(model_dir),
            "TRANSPORT_PROTOCOL": "grpc",  # the launcher's value when not given --rest
            "WORKER_COUNT": str(workers),
            "SERVER_PORT": str(port),
            "HEALTH_PORT": str(port),
            "HTTP_X_MS_SERVER_VERSION": f"azmlinfsrv/{AZMLINFSRV_VERSION}",
            "AML_APP_INSIGHTS_ENABLED": "false",  # never send telemetry from a local server
            "PYTHONUNBUFFERED": "1",  # so the log tail shows what the script printed last
        }
    )
    env.update(extra_env or {})
    return env


def gunicorn_version(python: Path | None = None) -> Version | None:
    """The gunicorn installed beside `python` (a virtualenv's `bin/python`; ours when None), read
    from its installed metadata: no process is started, so a server start pays nothing for it.
    None when that environment has no gunicorn."""
    if python is None:
        return Version(importlib.metadata.version("gunicorn"))
    # Not resolved: a virtualenv's bin/python is a link to the base interpreter.
    venv = Path(python).parent.parent
    for site in sorted(venv.glob("lib/python*/site-packages")):
        for found in importlib.metadata.distributions(name="gunicorn", path=[str(site)]):
            try:
                return Version(found.version)
            except InvalidVersion:
                return None
    return None


def server_command(
    port: int,
    workers: int,
    worker_timeout_seconds: int = DEFAULT_WORKER_TIMEOUT_SECONDS,
    python: Path | None = None,
    gunicorn: Version | None = None,
) -> list[str]:
    """gunicorn with the arguments `amlserver_linux.run` passes, bound to loopback; `python`:
    a model environment's interpreter (which has the inference server installed), else ours;
    `gunicorn`: that environment's gunicorn version (`gunicorn_version`), which decides the
    options passed."""
    if python is None:
        gunicorn = gunicorn_version()
    # gunicorn 25.1+ opens a control socket at ~/.gunicorn/gunicorn.ctl by default: one path
    # for every server of the user, and these servers need no remote control.
    control = ["--no-control-socket"] if gunicorn and gunicorn >= CONTROL_SOCKET_SINCE else []
    return [
        str(python) if python is not None else sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"{HOST}:{port}",
        "--workers",
        str(workers),
        "--timeout",
        str(worker_timeout_seconds),
        "--graceful-timeout",
        str(int(STOP_GRACE_SECONDS)),
        "--access-logfile",
        "-",
        # azmlinfsrv sends this to /dev/null because its launcher configures gunicorn's logger;
        # here the master's own messages ("Worker failed to boot") are the ones we need.
        "--error-logfile",
        "-",
        *control,
        # Workers die with their master (PR_SET_PDEATHSIG): a kill -9 of the master frees the port.
        "--config",
        HOOKS_CONFIG,
        WSGI_APP,
    ]


def start(
    entry_script: Path,
    model_dir: Path,
    log_path: Path,
    port: int | None = None,
    workers: int = 1,
    detached: bool = False,
    extra_env: dict[str, str] | None = None,
    worker_timeout_seconds: int = DEFAULT_WORKER_TIMEOUT_SECONDS,
    access: Access | None = None,
    relaunch_file: Path | None = None,
    python: Path | None = None,
) -> ServerHandle:
    """Start a server for `entry_script` with AZUREML_MODEL_DIR=`model_dir`; return at once.

    Its output goes to `log_path` (appended). `detached` servers outlive this process and are
    reaped by init; attached ones are reaped through the handle. Call `wait_ready` next.
    `access` adds what the script may read besides its folder and the model (a model
    environment), see `server_access`. A detached server's launch is written to
    `relaunch_file` when given (see `spawn_detached`).
    """
    entry_script = entry_script.resolve()
    if not entry_script.is_file():
        raise ScoringServerError(f"The scoring script '{entry_script}' does not exist.")
    port = port or free_port()
    model_dir = model_dir.resolve()
    env = server_environment(entry_script, model_dir, port, workers, extra_env)
    command = sandboxed_command(
        server_command(
            port, workers, worker_timeout_seconds, python,
            gunicorn_version(python) if python is not None else None,
        ),
        server_access(entry_script.parent, port, model_dir) | (access or Access()),
    )
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if detached:
        pid = spawn_detached(
            command, env, entry_script.parent, log_path, relaunch_file=relaunch_file
        )
        return ServerHandle(pid=pid, port=port, log_path=log_path)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=entry_script.parent,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return ServerHandle(pid=process.pid, port=port, log_path=log_path, process=process)


def server_access(folder: Path, port: int, *read: Path) -> Access:
    """What a model server may reach: its folder and `read` (the model) to read, its private
    folder (`PRIVATE_FOLDER` in `folder`) to write, its port to bind."""
    return Access.of(read=[folder, *read], write=[folder / PRIVATE_FOLDER], bind_ports=[port])


# A short-lived middle process starts the server in a new session and exits: the server is then
# a child of init, which reaps it whenever it ends, even after the app that started it is gone.
_DETACH = """
import json, subprocess, sys
spec = json.loads(sys.stdin.read())
with open(spec["log"], "ab") as log:
    server = subprocess.Popen(spec["command"], env=spec["env"], cwd=spec["cwd"],
                              stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
print(server.pid)
"""


def spawn_detached(
    command: list[str],
    env: dict[str, str],
    cwd: Path,
    log_path: Path,
    what: str = "inference server",
    relaunch_file: Path | None = None,
) -> int:
    """Start `command` in its own session through a short-lived middle process, so that it is
    re-parented to init and outlives this process; its output goes to `log_path`. The pid.

    `relaunch_file` receives the launch (command, environment, folder, log) as JSON, readable by
    this user only, so that a supervisor without our environment (the endpoint's front) can
    start the same server again. The environment holds nothing the server does not get anyway.
    """
    spec = json.dumps({"command": command, "env": env, "cwd": str(cwd), "log": str(log_path)})
    if relaunch_file is not None:
        descriptor = os.open(relaunch_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(spec)
    done = subprocess.run(
        [sys.executable, "-c", _DETACH],
        input=spec,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.strip().isdigit():
        raise ScoringServerError(f"The {what} could not be started: {done.stderr}")
    return int(done.stdout.strip())


def is_running(handle: ServerHandle) -> bool:
    """Whether the server's master process is alive (a zombie counts as gone).

    A handle rebuilt from a stored pid may name a pid the system has since given to another
    program: only a gunicorn serving this app on the handle's port counts as the server.
    """
    if handle.process is not None:
        return handle.process.poll() is None
    return _is_our_server(handle)


def _is_our_server(handle: ServerHandle) -> bool:
    try:
        command = Path(f"/proc/{handle.pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{handle.pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    bind = f"{HOST}:{handle.port}".encode()
    return state != "Z" and WSGI_APP.encode() in command and bind in command


def wait_ready(
    handle: ServerHandle,
    timeout_seconds: float,
    progress: Callable[[str], None] | None = None,
) -> float:
    """Block until `GET /` answers 200; return the seconds it took.

    Raises `ScoringServerError` with the log tail if the server exits first (the script did
    not import, has no run(), or its init() raised) or is not ready within `timeout_seconds`.
    """
    started = time.monotonic()
    deadline = started + timeout_seconds
    if progress:
        progress(f"Starting the inference server on {handle.url} (loading the script and model)")
    while True:
        if not is_running(handle):
            raise ScoringServerError(
                f"The inference server stopped before it was ready.\n\n{log_tail(handle.log_path)}"
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ScoringServerError(
                f"The inference server was not ready within {timeout_seconds:.0f} s: the "
                "script's init() may be stuck or slow. Check it, or allow more time."
                f"\n\n{log_tail(handle.log_path)}"
            )
        # While init() runs, the listening socket accepts but nobody answers: a short probe
        # timeout keeps this loop checking that the process is still alive.
        if _probe(handle.url + "/", min(_PROBE_SECONDS, remaining)):
            return time.monotonic() - started
        time.sleep(min(_POLL_SECONDS, max(deadline - time.monotonic(), 0)))


def _probe(url: str, timeout: float) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, TimeoutError):
        return False


def score(
    handle: ServerHandle,
    body: bytes | str | dict | list,
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> tuple[int, Any]:
    """POST `body` to /score; the status code and the answer (parsed JSON, else text).

    A 4xx/5xx answer is returned, not raised; only a server that cannot be reached raises.
    """
    if isinstance(body, dict | list):
        data = json.dumps(body).encode("utf-8")
    elif isinstance(body, str):
        data = body.encode("utf-8")
    else:
        data = body
    request = urllib.request.Request(
        handle.score_url,
        data=data,
        method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, _parsed(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _parsed(exc.read())
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise ScoringServerError(
            f"The inference server at {handle.url} did not answer /score ({exc}).\n\n"
            f"{log_tail(handle.log_path)}"
        ) from exc


def _parsed(raw: bytes) -> Any:
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def stop(handle: ServerHandle, grace_seconds: float = STOP_GRACE_SECONDS) -> None:
    """Stop the whole process group: SIGTERM, then SIGKILL after `grace_seconds`. Idempotent.

    A detached server's group is signalled only while its master is still the server (see
    `is_running`): a reused pid never gets a signal from here.
    """
    if handle.process is None and not _is_our_server(handle):
        return
    if not _signal_group(handle.pid, signal.SIGTERM):
        _reap(handle)
        return
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        _reap(handle)
        if not _group_alive(handle.pid):
            return
        time.sleep(_POLL_SECONDS)
    # A worker busy in init() ignores SIGTERM until init() returns; it does not outlive this.
    _signal_group(handle.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _group_alive(handle.pid) and time.monotonic() < deadline:
        _reap(handle)
        time.sleep(_POLL_SECONDS)
    _reap(handle)


def _signal_group(pgid: int, signum: int) -> bool:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _reap(handle: ServerHandle) -> None:
    if handle.process is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            handle.process.wait(timeout=0)


def log_tail(path: Path, lines: int = DEFAULT_LOG_TAIL_LINES) -> str:
    """The last `lines` lines of a server log, as text to show under an error."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no server log)"
    tail = text.splitlines()[-lines:]
    return "Server log (last lines):\n" + "\n".join(tail) if tail else "(the server log is empty)"
