"""The MLflow scoring server's command of a model environment, recorded once when it is built.

MLflow 2 serves with gunicorn and a WSGI app, MLflow 3 with uvicorn: only the environment's own
MLflow knows its command (`mlflow.pyfunc.scoring_server.get_cmd`). Asking it takes a Python that
imports MLflow, about 2 s, which every start of a server paid. So the build asks once (in its
import check's process, which has imported MLflow already), with
placeholders for what differs between starts (model path, host, port, workers), and writes the
answer as `serve.json` next to `ready.json`; a start fills the placeholders in.

    check_environment(..., serve_arguments=placeholder_arguments())  # the build's import check
    record(folder, outcome.serve, outcome.serve_error, log_line)    # writes serve.json
    serve_command(folder, model_path, host, port, workers)   # None: ask the environment
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

SERVE_FILE = "serve.json"

# Placeholders: plain letters, so that shlex.quote and file-URI quoting keep them as they are.
# get_cmd only formats host, port and workers into text, so text placeholders work for all.
MODEL_PLACEHOLDER = "/DSMODELPATHPLACEHOLDER"
HOST_PLACEHOLDER = "DSHOSTPLACEHOLDER"
PORT_PLACEHOLDER = "DSPORTPLACEHOLDER"
WORKERS_PLACEHOLDER = "DSWORKERSPLACEHOLDER"
_PLACEHOLDERS = (MODEL_PLACEHOLDER.lstrip("/"), HOST_PLACEHOLDER, PORT_PLACEHOLDER,
                 WORKERS_PLACEHOLDER)

# Runs in the environment: its MLflow's serving command and what it adds to the environment.
ASK_SCRIPT = """
import json, os, sys
from mlflow.pyfunc.scoring_server import get_cmd
path, port, host, workers = sys.argv[1:5]
command, env = get_cmd(path, port=port, host=host, nworkers=workers)
print(json.dumps([command, {k: v for k, v in env.items() if os.environ.get(k) != v}]))
"""


def ask_arguments(model_path: str, port: str, host: str, workers: str) -> list[str]:
    """`python -P -c ASK_SCRIPT ...` arguments after the interpreter."""
    return ["-P", "-c", ASK_SCRIPT, model_path, port, host, workers]


def placeholder_arguments() -> tuple[str, str, str, str]:
    """get_cmd's arguments for a recording: model path, port, host, workers, as placeholders."""
    return MODEL_PLACEHOLDER, PORT_PLACEHOLDER, HOST_PLACEHOLDER, WORKERS_PLACEHOLDER


def record(
    folder: Path,
    answer: tuple[str, dict[str, str]] | None,
    why_not: str,
    line: Callable[[str], None],
) -> bool:
    """Write serve.json from the environment's answer to get_cmd(*placeholder_arguments()) (the
    build's import check asks it: import_check.check_environment); True when recorded. An
    environment without MLflow (or whose MLflow fails) records nothing: a start then asks, and
    says why."""
    if answer is None:
        line(f"# no MLflow serving command recorded: {why_not[:300] or 'no answer'}")
        return False
    command, added = answer
    data = {"command": str(command), "env": {str(k): str(v) for k, v in added.items()}}
    temporary = folder / f".{SERVE_FILE}.{os.getpid()}.tmp"
    temporary.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(temporary, folder / SERVE_FILE)
    line(f"MLflow serving command recorded: {data['command']}")
    return True


def serve_command(
    folder: Path, model_path: Path, host: str, port: int, workers: int
) -> tuple[str, dict[str, str]] | None:
    """The recorded command and added variables for this start, or None when the environment
    has none recorded (built before this existed, or without MLflow) or it looks wrong."""
    try:
        data = json.loads((folder / SERVE_FILE).read_text(encoding="utf-8"))
        command, added = str(data["command"]), dict(data["env"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if PORT_PLACEHOLDER not in command:
        return None
    # get_cmd turns the path into a file URI (pathlib's as_uri, in MLflow 2 and 3); the
    # placeholder has nothing to quote, so only the real path's URI needs working out.
    real_uri = Path(os.path.abspath(model_path)).as_uri()
    values = {
        Path(MODEL_PLACEHOLDER).as_uri(): real_uri,
        MODEL_PLACEHOLDER: str(model_path),
        HOST_PLACEHOLDER: host,
        PORT_PLACEHOLDER: str(port),
        WORKERS_PLACEHOLDER: str(workers),
    }

    def fill(text: str) -> str:
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        return text

    command = fill(command)
    filled = {str(k): fill(str(v)) for k, v in added.items()}
    if any(p in command or any(p in v for v in filled.values()) for p in _PLACEHOLDERS):
        return None  # a placeholder in a form we do not know: ask the environment instead
    return command, filled
