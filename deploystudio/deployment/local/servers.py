"""Start the processes of a local endpoint: a deployment's model server, and the endpoint's front.

A deployment's server runs in a folder of its own that holds everything it reads: score.py, the
model (hard links to the downloaded copy, laid out as Azure ML mounts a registered model) and
server.log. Servers run model code, so they run behind `deploystudio.worker.sandbox` with an
allow-listed environment (`scrubbed_environment`): each reads its own folder, writes its private
folder in it and binds its own port, and reaches neither the store nor other deployments.
The front is our code and reads the store (keys included): it runs outside that barrier.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow.pyfunc.scoring_server import get_cmd

from deploystudio import inference_server
from deploystudio.customization.scoring_script import (
    ScriptTemplate,
    generate_scoring_script,
)
from deploystudio.deployment.base import Deployment, Runtime
from deploystudio.deployment.local.processes import (
    FRONT_LOG,
    FRONT_MODULE,
    HOST,
    RELAUNCH_FILE,
    SERVER_LOG,
    ServerKind,
    ServerProcess,
    spawn_detached,
)
from deploystudio.deployment.store_records import ENV_SETTING
from deploystudio.environments.build import Environment
from deploystudio.environments.choice import Chosen, EnvMode, choose, parse_mode
from deploystudio.environments.serve_command import ask_arguments, serve_command
from deploystudio.errors import DeploymentConfigError, ScoringServerError
from deploystudio.worker.isolation import scrubbed_environment
from deploystudio.worker.sandbox import Access, sandboxed_command

SCRIPT_FILE = "score.py"
# A deployment's setting: which environment its server runs in (auto, model or app).
ENVIRONMENT_SETTING = "environment"
MODELS_FOLDER = "azureml-models"
# Azure's examples register the model from a folder named model/, mounted at
# AZUREML_MODEL_DIR/model: scripts copied from them find it there.
MODEL_FOLDER = "model"

INSTANCE_COUNT_SETTING = "instance_count"
MAX_INSTANCES = 8


def checked_server_settings(settings: Mapping[str, Any]) -> tuple[int, dict[str, str]]:
    """A deployment's server workers and the variables named for it; DeploymentConfigError
    when the count is out of range or a named variable is not set here."""
    workers = settings.get(INSTANCE_COUNT_SETTING, 1)
    if isinstance(workers, bool) or not isinstance(workers, int):
        workers = 0
    if not 1 <= workers <= MAX_INSTANCES:
        raise DeploymentConfigError(
            f"Setting {INSTANCE_COUNT_SETTING!r} must be a whole number from 1 to "
            f"{MAX_INSTANCES} (server workers on this machine)."
        )
    names = settings.get(ENV_SETTING, [])
    missing = [n for n in names if n not in os.environ]
    if missing:
        raise DeploymentConfigError(
            f"The deployment needs environment variables that are not set here: "
            f"{', '.join(missing)}. Set them before starting Deploy Studio."
        )
    # Named by the user for this deployment: passed on purpose, like Azure's
    # environment_variables (everything else of ours stays out).
    return workers, {n: os.environ[n] for n in names}


@dataclass(frozen=True)
class ServerConfig:
    """What one start of a deployment's server needs."""

    runtime: Runtime
    model_path: Path
    # score.py of a scoring-script deployment; None serves the model with our no-code script.
    script: str | None = None
    workers: int = 1
    # Variables the user named for the deployment, with values from this process's environment.
    extra_env: Mapping[str, str] = field(default_factory=dict)
    # gunicorn restarts a worker silent for this long; longer than the start wait, so that a
    # slow init() is not restarted while we still wait for it.
    worker_timeout_seconds: int = inference_server.DEFAULT_WORKER_TIMEOUT_SECONDS
    # What the server may read besides its own folder (a model environment built elsewhere).
    read_roots: tuple[Path, ...] = ()
    # The model's own environment (deploystudio.environments.choice), None for the app's: the
    # MLflow runtime then runs that environment's MLflow scoring server, as
    # `mlflow models serve --env-manager uv` does, and the azureml runtime Azure ML's inference
    # server installed there (see server_environment).
    environment: Environment | None = None
    # What the deployment's record keeps of it (environment_record); empty when not chosen here.
    environment_record: Mapping[str, Any] = field(default_factory=dict)


def server_environment(
    runtime: Runtime, mode: str | None, model_path: Path, home: Path
) -> Chosen:
    """The environment a deployment's server runs in (its `environment` setting: auto, model or
    app; app when unset, as deployments made before the setting existed). For the azureml
    runtime a model environment also holds Azure ML's inference server, as Azure's inference
    images do: an extra requirement, so another environment than the MLflow runtime's."""
    chosen_mode = parse_mode(mode or EnvMode.APP.value)
    extras = inference_server.SERVER_REQUIREMENTS if runtime is Runtime.AZUREML else ()
    return choose(chosen_mode, model_path, home, extra_requirements=extras)


def environment_record(chosen: Chosen) -> dict[str, Any]:
    """What a deployment's record keeps of the environment its server runs in (shown by
    `endpoint show` and the Endpoints page; the Azure export pins from it)."""
    environment = chosen.environment
    return {
        "mode": chosen.mode.value,
        "key": environment.key if environment is not None else None,
        "python": str(chosen.python),
        "python_version": (
            environment.python_version if environment is not None else platform.python_version()
        ),
        "reason": chosen.reason,
    }


def deployment_server_config(
    record: Deployment,
    script: str | None,
    model_path: Path,
    home: Path,
    worker_timeout_seconds: int,
) -> ServerConfig:
    """The start of `record`'s server: its settings checked, its environment chosen (built
    when the model's own is needed and missing)."""
    workers, extra_env = checked_server_settings(record.settings)
    chosen = server_environment(
        record.runtime, record.settings.get(ENVIRONMENT_SETTING), model_path, home
    )
    return ServerConfig(
        runtime=record.runtime,
        model_path=model_path,
        script=script,
        workers=workers,
        extra_env=extra_env,
        worker_timeout_seconds=worker_timeout_seconds,
        environment=chosen.environment,
        environment_record=environment_record(chosen),
    )


def start_deployment_server(config: ServerConfig, folder: Path) -> ServerProcess:
    """Write the server's files into `folder` and start it detached; return at once.

    Raises DeployStudioError subclasses when the files cannot be prepared (no process then).
    """
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / SERVER_LOG
    model_dir = inference_server.stage_model(
        config.model_path, folder / MODELS_FOLDER, folder_name=MODEL_FOLDER
    )
    if config.runtime is Runtime.AZUREML:
        environment = config.environment
        source = config.script
        if source is None:
            source = generate_scoring_script(ScriptTemplate.NO_CODE, config.model_path)
        script = folder / SCRIPT_FILE
        script.write_text(source, encoding="utf-8")
        handle = inference_server.start(
            script,
            model_dir,
            log_path,
            workers=config.workers,
            detached=True,
            extra_env=dict(config.extra_env),
            worker_timeout_seconds=config.worker_timeout_seconds,
            access=Access.of(
                read=[*config.read_roots, *([environment.root] if environment else [])]
            ),
            relaunch_file=folder / RELAUNCH_FILE,
            python=environment.python if environment is not None else None,
        )
        return ServerProcess(ServerKind.AZUREML, handle.pid, handle.port, log_path)
    return _start_mlflow_server(config, model_dir / MODEL_FOLDER, folder, log_path)


def _start_mlflow_server(
    config: ServerConfig, model_path: Path, folder: Path, log_path: Path
) -> ServerProcess:
    """MLflow's own scoring server (what `mlflow models serve --env-manager local` runs), of
    the app's MLflow or of the model environment's."""
    port = inference_server.free_port()
    private = folder / inference_server.PRIVATE_FOLDER
    read_roots = [*config.read_roots]
    environment = config.environment
    if environment is None:
        python = Path(sys.executable)
        command, command_env = get_cmd(
            str(model_path), port=port, host=HOST, nworkers=config.workers
        )
        # get_cmd returns a copy of our whole environment: take only what it added (the model
        # path and the request timeout), so our secrets stay out.
        added = {k: v for k, v in command_env.items() if os.environ.get(k) != v}
    else:
        python = environment.python
        read_roots.append(environment.root)
        command, added = _environment_command(environment, model_path, port, config, private)
    env = scrubbed_environment(
        home=private,
        temp=private,
        # PYTHONFAULTHANDLER: a native crash writes its signal to the log (the server is not
        # our child: its exit status cannot be read), as Azure ML's inference server does.
        extra={**added, **config.extra_env, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"},
    )
    # get_cmd names `uvicorn` (MLflow 3) or `gunicorn` (MLflow 2) on PATH: the one of the
    # interpreter is the one installed with it. MLflow runs the command through a shell, which
    # expands ${GUNICORN_CMD_ARGS} (gunicorn reads that variable itself anyway): dropped here.
    words = [w for w in shlex.split(command) if not w.startswith("${")]
    argv = [str(python), "-m", *words]
    access = inference_server.server_access(folder, port) | Access.of(read=read_roots)
    command_line = sandboxed_command(argv, access)
    return spawn_detached(
        ServerKind.MLFLOW,
        command_line,
        env,
        folder,
        log_path,
        port,
        relaunch_file=folder / RELAUNCH_FILE,
    )


def _environment_command(
    environment: Environment, model_path: Path, port: int, config: ServerConfig, private: Path
) -> tuple[str, dict[str, str]]:
    recorded = serve_command(environment.root, model_path, HOST, port, config.workers)
    if recorded is not None:
        return recorded  # written when the environment was built: no interpreter to start
    # Built before the command was recorded (or without MLflow): ask its MLflow (MLflow 2
    # serves with gunicorn and a WSGI app, MLflow 3 with uvicorn). The environment's packages
    # were chosen by the model (a package may run code as the interpreter starts, through a
    # .pth file): behind the sandbox too, with nothing of ours.
    argv = [str(environment.python),
            *ask_arguments(str(model_path), str(port), HOST, str(config.workers))]
    access = Access.of(
        read=[model_path, *config.read_roots, environment.root], write=[private]
    )
    detail = "it did not answer in 120 s"
    try:
        done = subprocess.run(
            sandboxed_command(argv, access),
            capture_output=True,
            text=True,
            timeout=120,
            env=scrubbed_environment(home=private, temp=private),
        )
        detail = done.stderr.strip()[-800:] or f"it exited with code {done.returncode}"
        command, added = json.loads(done.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        raise ScoringServerError(
            f"The model environment's MLflow could not give its serving command: {detail}. "
            "Deploy with --env app to use the app's MLflow instead."
        ) from None
    return str(command), {str(k): str(v) for k, v in added.items()}


def start_front(
    db_path: Path, endpoint: str, folder: Path, port: int | None = None
) -> ServerProcess:
    """Start the endpoint's front (deploystudio.deployment.local.front) detached; return at once.

    The front reads traffic, keys and deployments from the store itself: it holds no state, so
    a dead one is simply started again, on its old `port` when that is still free.
    """
    folder.mkdir(parents=True, exist_ok=True)
    port = port if port and _is_free(port) else inference_server.free_port()
    command = [
        sys.executable,
        # -P: nothing from the working folder on sys.path (deployment folders hold score.py).
        "-P",
        "-m",
        FRONT_MODULE,
        "--db",
        str(db_path),
        "--endpoint",
        endpoint,
        "--port",
        str(port),
    ]
    env = scrubbed_environment()
    env["PYTHONUNBUFFERED"] = "1"
    return spawn_detached(ServerKind.FRONT, command, env, folder, folder / FRONT_LOG, port)


def _is_free(port: int) -> bool:
    """Whether the front could listen on `port`: like the front's server, with SO_REUSEADDR,
    so that connections of the previous front still closing (TIME_WAIT) do not count."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def first_line(text: str) -> str:
    """The first line of a message (for an audit entry or a one-line reason)."""
    return text.strip().splitlines()[0] if text.strip() else text


def new_run_folder(deployment_folder: Path) -> Path:
    """`<deployment>/<n>` for the next n, created here (two starts never share one)."""
    deployment_folder.mkdir(parents=True, exist_ok=True)
    numbers = [int(p.name) for p in deployment_folder.iterdir() if p.name.isdigit()]
    number = max(numbers, default=0) + 1
    while True:
        folder = deployment_folder / str(number)
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            number += 1


def runtime_of(value: Any) -> Runtime:
    """`value` as a Runtime; DeploymentConfigError names the choices."""
    try:
        return Runtime(value)
    except ValueError:
        choices = ", ".join(repr(r.value) for r in Runtime)
        raise DeploymentConfigError(
            f"Unknown runtime {value!r}: choose one of {choices}."
        ) from None


def bundle_script(home: Path, bundle: str, runtime: Runtime) -> str:
    """The score.py of saved scoring bundle `bundle` ("name:version") under `home`."""
    if runtime is not Runtime.AZUREML:
        raise DeploymentConfigError(
            "A scoring bundle runs in Azure ML's inference server: use runtime 'azureml' "
            "with a bundle (MLflow's scoring server takes no score.py)."
        )
    # Imported here: bundles import azure-ai-ml (about 2 s), which only bundles need.
    from deploystudio.customization.bundles import BundleStore

    name, _, version = str(bundle).partition(":")
    if not version.isdigit():
        raise DeploymentConfigError(
            f"Scoring bundle {bundle!r} must be written name:version, e.g. 'my-score:1'."
        )
    return BundleStore(home / "bundles").get(name, int(version)).script()


def log_tail_inside(log_path: str | None, data_folder: Path, lines: int) -> str:
    """The last `lines` lines of the log a record names, "" when there is none. Only a file
    inside the studio's data folder is read: the record is data, and must not make the pages a
    file viewer."""
    if not log_path:
        return ""
    path = Path(log_path).resolve()
    if not path.is_relative_to(data_folder.resolve()) or not path.is_file():
        return ""
    with path.open("rb") as file:
        # The tail of a long log without reading all of it.
        file.seek(max(0, path.stat().st_size - 200 * lines))
        text = file.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])
