"""Start the processes of a local endpoint: a deployment's model server, and the endpoint's front.

A deployment's server runs in a folder of its own that holds everything it reads: score.py, the
model (hard links to the downloaded copy, laid out as Azure ML mounts a registered model) and
server.log. Servers run model code, so they run behind `deploystudio.worker.sandbox` with an
allow-listed environment (`scrubbed_environment`): each reads its own folder, writes its private
folder in it and binds its own port, and reaches neither the store nor other deployments.
The front is our code and reads the store (keys included): it runs outside that barrier.
"""

from __future__ import annotations

import os
import shlex
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.pyfunc.scoring_server import get_cmd

from deploystudio import inference_server
from deploystudio.customization.scoring_script import ScriptTemplate, generate_scoring_script
from deploystudio.deployment.base import Runtime
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
from deploystudio.worker.isolation import scrubbed_environment
from deploystudio.worker.sandbox import Access, sandboxed_command

SCRIPT_FILE = "score.py"
MODELS_FOLDER = "azureml-models"
# Azure's examples register the model from a folder named model/, mounted at
# AZUREML_MODEL_DIR/model: scripts copied from them find it there.
MODEL_FOLDER = "model"


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
            access=Access.of(read=config.read_roots),
            relaunch_file=folder / RELAUNCH_FILE,
        )
        return ServerProcess(ServerKind.AZUREML, handle.pid, handle.port, log_path)
    return _start_mlflow_server(config, model_dir / MODEL_FOLDER, folder, log_path)


def _start_mlflow_server(
    config: ServerConfig, model_path: Path, folder: Path, log_path: Path
) -> ServerProcess:
    """MLflow's own scoring server (what `mlflow models serve --env-manager local` runs)."""
    port = inference_server.free_port()
    command, command_env = get_cmd(str(model_path), port=port, host=HOST, nworkers=config.workers)
    private = folder / inference_server.PRIVATE_FOLDER
    # get_cmd returns a copy of our whole environment: take only what it added (the model path
    # and the request timeout), so our secrets stay out.
    added = {k: v for k, v in command_env.items() if os.environ.get(k) != v}
    env = scrubbed_environment(
        home=private, temp=private, extra={**added, **config.extra_env, "PYTHONUNBUFFERED": "1"}
    )
    # get_cmd names `uvicorn` on PATH; the one of this interpreter is the one installed with it.
    argv = [sys.executable, "-m", *shlex.split(command)]
    access = inference_server.server_access(folder, port) | Access.of(read=config.read_roots)
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
