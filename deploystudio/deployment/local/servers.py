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
import shlex
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.pyfunc.scoring_server import get_cmd

from deploystudio import inference_server
from deploystudio.customization.scoring_script import ScriptTemplate, generate_scoring_script
from deploystudio.deployment.base import Runtime
from deploystudio.deployment.local.processes import (
    HOST,
    SERVER_LOG,
    ServerKind,
    ServerProcess,
    spawn_detached,
)
from deploystudio.environments.build import Environment
from deploystudio.errors import ScoringServerError
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
    # The model's own environment (deploystudio.environments.choice), None for the app's: the
    # MLflow runtime then runs that environment's MLflow scoring server, as
    # `mlflow models serve --env-manager uv` does.
    environment: Environment | None = None


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
        home=private, temp=private, extra={**added, **config.extra_env, "PYTHONUNBUFFERED": "1"}
    )
    # get_cmd names `uvicorn` (MLflow 3) or `gunicorn` (MLflow 2) on PATH: the one of the
    # interpreter is the one installed with it. MLflow runs the command through a shell, which
    # expands ${GUNICORN_CMD_ARGS} (gunicorn reads that variable itself anyway): dropped here.
    words = [w for w in shlex.split(command) if not w.startswith("${")]
    argv = [str(python), "-m", *words]
    access = inference_server.server_access(folder, port) | Access.of(read=read_roots)
    command_line = sandboxed_command(argv, access)
    return spawn_detached(ServerKind.MLFLOW, command_line, env, folder, log_path, port)


# Asks the environment's own MLflow for its serving command (MLflow 2 serves with gunicorn and
# a WSGI app, MLflow 3 with uvicorn): what it adds to the environment, as JSON.
_GET_CMD = """
import json, os, sys
from mlflow.pyfunc.scoring_server import get_cmd
path, port, host, workers = sys.argv[1:5]
command, env = get_cmd(path, port=int(port), host=host, nworkers=int(workers))
print(json.dumps([command, {k: v for k, v in env.items() if os.environ.get(k) != v}]))
"""


def _environment_command(
    environment: Environment, model_path: Path, port: int, config: ServerConfig, private: Path
) -> tuple[str, dict[str, str]]:
    # The environment's packages were chosen by the model (a package may run code as the
    # interpreter starts, through a .pth file): behind the sandbox too, with nothing of ours.
    argv = [str(environment.python), "-P", "-c", _GET_CMD, str(model_path), str(port), HOST,
            str(config.workers)]
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
