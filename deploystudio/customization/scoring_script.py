"""Scoring scripts (`score.py`) for Azure ML, generated from templates and validated for real.

A script follows Azure ML's contract: `init()` loads the model from AZUREML_MODEL_DIR, `run()`
scores. Generated scripts import MLflow and the inference server only, never Deploy Studio:
they run on Azure as they run here.

Validation runs the script where it will run: in the Azure ML inference server (online), or
under a driver that calls init() and run(mini_batch) as a batch deployment does (batch); both in
child processes behind `deploystudio.worker.sandbox`, with an allow-listed environment: the script
reads its run folder (script, staged model, example) and nothing else of the data folder.
Failures come back as a `ValidationResult` that says which step failed and why, with the log
tail, so a page can show them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import Model

from deploystudio import inference_server
from deploystudio.customization.batch_driver import MISSING_FUNCTION_EXIT, STAGE_MARKER
from deploystudio.errors import (
    InvalidModelError,
    ScoringServerError,
    ScriptSyntaxError,
    ScriptTemplateError,
)

# example_request moved to payloads.py (the Azure export writes it as request.json too); kept
# importable from here, where the page, the CLI and the tests have always found it.
from deploystudio.payloads import example_request as example_request
from deploystudio.worker.isolation import scrubbed_environment
from deploystudio.worker.sandbox import Access, sandboxed_command

DEFAULT_TIMEOUT_SECONDS = 120.0
SCRIPT_NAME = "score.py"
# What the batch variant is saved as in its run folder (the driver imports it by path).
BATCH_SCRIPT_NAME = "batch_score.py"
MODELS_FOLDER = "azureml-models"
# A model registered from a folder named model/ (as in Azure's examples) is mounted as
# AZUREML_MODEL_DIR/model: scripts copied from Azure's samples expect that path.
AZURE_MODEL_FOLDER = "model"
# How long a validation server may take to stop: it is thrown away, nothing to drain.
_STOP_GRACE_SECONDS = 1.0
_INCLUDES = re.compile(r"^(?:# @include \w+\n)+", re.MULTILINE)
# The last line of a Python traceback: "ValueError: boom", "mod.CustomError", "KeyboardInterrupt".
_EXCEPTION_LINE = re.compile(
    r"^(?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt|Warning)(?::.*)?$"
)
# A traceback frame: `  File "/run/validate-x/score.py", line 12, in run`.
_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+)', re.MULTILINE)
# Exceptions that the inference server wraps the script's own exception in.
_SERVER_EXCEPTIONS = ("UserScript", "AzmlinfsrvError", "azureml_inference_server_http")


class ScriptTemplate(StrEnum):
    NO_CODE = "no-code"
    PROBABILITIES = "probabilities"
    PRE_POST = "pre-post"
    BATCH = "batch"

    @property
    def is_batch(self) -> bool:
        return self is ScriptTemplate.BATCH


TEMPLATE_DESCRIPTIONS: dict[ScriptTemplate, str] = {
    ScriptTemplate.NO_CODE: (
        "What Azure ML's automatic scoring does for MLflow models: input_data as a table, a "
        "list or named lists, optional params; the predictions back as a JSON list."
    ),
    ScriptTemplate.PROBABILITIES: (
        "For scikit-learn classifiers: each row's class probabilities (predict_proba), "
        "labelled by class."
    ),
    ScriptTemplate.PRE_POST: (
        "The no-code script with two functions to edit: preprocess(data) before the model and "
        "postprocess(predictions) after it."
    ),
    ScriptTemplate.BATCH: (
        "For batch deployments: run(mini_batch) scores a list of CSV or Parquet files and "
        "returns one row per input row, with its file name."
    ),
}

_TEMPLATE_FILES = {
    ScriptTemplate.NO_CODE: "no_code.py",
    ScriptTemplate.PROBABILITIES: "probabilities.py",
    ScriptTemplate.PRE_POST: "pre_post.py",
    ScriptTemplate.BATCH: "batch.py",
}


# ----------------------------------------------------------------------------- generation


def _template_text(file_name: str) -> str:
    return (resources.files("deploystudio.customization") / "templates" / file_name).read_text(
        encoding="utf-8"
    )


def _included_helpers(includes: re.Match) -> str:
    """The helper functions that `# @include name` lines name, from templates/_name.py."""
    names = re.findall(r"# @include (\w+)", includes.group(0))
    helpers = "\n\n".join(_template_text(f"_{name}.py").strip() + "\n" for name in names)
    return f"\n{helpers}"


def _load_mlmodel(model_path: Path) -> Model:
    try:
        return Model.load(str(model_path))
    except (MlflowException, OSError) as exc:
        raise InvalidModelError(f"'{model_path}' is not an MLflow model folder: {exc}") from exc


def available_templates(model_path: Path) -> list[ScriptTemplate]:
    """The templates that apply to this model: probabilities needs a scikit-learn flavor."""
    flavors = _load_mlmodel(model_path).flavors
    sklearn = "sklearn" in flavors
    return [t for t in ScriptTemplate if t is not ScriptTemplate.PROBABILITIES or sklearn]


def generate_scoring_script(template: ScriptTemplate, model_path: Path) -> str:
    """The source of a scoring script for this model, from `template`.

    Reads the model's MLmodel file only (never its pickles). The shared helpers (finding the
    model folder, parsing a request) are written into the script, which stands alone.
    """
    template = ScriptTemplate(template)
    if template not in available_templates(model_path):
        raise ScriptTemplateError(
            f"The {template} template needs a scikit-learn model (it calls predict_proba), and "
            "this model has no sklearn flavor. Choose the no-code or pre-post template."
        )
    text = _template_text(_TEMPLATE_FILES[template])
    # PEP 8 spacing in the result: two blank lines around each function, never more.
    text = re.sub(r"\n{4,}", "\n\n\n", _INCLUDES.sub(_included_helpers, text))
    header = (
        f"# Generated by Deploy Studio from its {template} template. Edit freely: it runs in\n"
        "# Azure ML's inference server as it is, with the model's packages plus mlflow.\n"
    )
    return header + text


# ----------------------------------------------------------------------------- syntax


def check_syntax(source: str, filename: str = SCRIPT_NAME) -> None:
    """Compile (never run) the script; raise `ScriptSyntaxError` "line L, column C: msg"."""
    try:
        # compile(), not ast.parse(): it also finds what the compiler rejects ('return'
        # outside a function, a misplaced 'nonlocal'). Compiling runs nothing.
        compile(source, filename, "exec", dont_inherit=True)
    except SyntaxError as exc:
        # A NUL character comes without a place (Python 3.11): find it ourselves.
        line, column = (exc.lineno, exc.offset) if exc.lineno else _nul_place(source)
        error = ScriptSyntaxError(
            f"line {line}, column {column}: {exc.msg}. Fix it, then validate again."
        )
        error.lineno, error.offset = line, column
        raise error from exc
    except ValueError as exc:  # what some Python versions raise for a NUL character
        line, column = _nul_place(source)
        error = ScriptSyntaxError(
            f"line {line}, column {column}: {exc}. Remove it and validate again."
        )
        error.lineno, error.offset = line, column
        raise error from exc


def _nul_place(source: str) -> tuple[int, int]:
    """The line and column of the first NUL character (1, 1 when there is none)."""
    at = source.find("\x00")
    if at < 0:
        return 1, 1
    return source.count("\n", 0, at) + 1, at - source.rfind("\n", 0, at)


# ----------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class ValidationResult:
    """How a script fared. `stage` is where it stopped: syntax, start, score, or done (ok)."""

    ok: bool
    stage: str
    message: str
    status_code: int | None
    response: Any
    log_tail: str
    seconds: float
    ready_seconds: float | None = None
    score_seconds: float | None = None
    # The line of the script where it failed (1-based): the syntax error's, else the script's
    # deepest frame in the traceback the server or driver logged; None when the script's own
    # code is not in it (a missing function, a timeout, a failure in the model's code only).
    error_line: int | None = None


def script_error_line(log: str, script_name: str) -> int | None:
    """The line of `script_name` in the last traceback frame of `log` that is in that script:
    where the script's own code raised (or called what raised)."""
    lines = [
        int(match["line"])
        for match in _FRAME.finditer(log)
        if Path(match["file"]).name == script_name
    ]
    return lines[-1] if lines else None


def validate_scoring_script(
    source: str,
    model_path: Path,
    request_body: dict | str,
    work_dir: Path,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    progress: Callable[[str], None] = lambda message: None,
    read_roots: Sequence[Path] = (),
    python: Path | None = None,
) -> ValidationResult:
    """Check the syntax, serve the script with the model in the real inference server on
    127.0.0.1, POST `request_body` to /score, and stop the server (always). The server reads its
    run folder and `read_roots` (a model environment), nothing else of the data folder.
    `python`: a model environment's interpreter to run the server with (the environment must
    have azureml-inference-server-http: `SERVER_REQUIREMENT`); None for the app's."""
    started = time.monotonic()

    def result(ok: bool, stage: str, message: str, **fields: Any) -> ValidationResult:
        fields.setdefault("status_code", None)
        fields.setdefault("response", None)
        fields.setdefault("log_tail", "")
        return ValidationResult(ok, stage, message, seconds=time.monotonic() - started, **fields)

    progress("Checking the syntax")
    try:
        check_syntax(source)
    except ScriptSyntaxError as exc:
        return result(
            False,
            "syntax",
            f"The script is not valid Python: {exc}",
            error_line=getattr(exc, "lineno", None),
        )

    run_dir = _run_folder(work_dir)
    log_path = run_dir / "server.log"
    handle = None
    try:
        script = run_dir / SCRIPT_NAME
        script.write_text(source, encoding="utf-8")
        model_dir = inference_server.stage_model(
            model_path, run_dir / MODELS_FOLDER, folder_name=AZURE_MODEL_FOLDER
        )
        progress("Starting the Azure ML inference server with the script and the model")
        handle = inference_server.start(
            script,
            model_dir,
            log_path,
            # Longer than our wait, so that gunicorn does not restart a slow init() meanwhile.
            worker_timeout_seconds=int(timeout_seconds) + 60,
            access=Access.of(read=read_roots),
            python=python,
        )
        try:
            ready_seconds = inference_server.wait_ready(handle, timeout_seconds, progress)
        except ScoringServerError:
            log = _read(log_path)
            timed_out = inference_server.is_running(handle)
            return result(
                False,
                "start",
                _start_failure(log, timed_out, timeout_seconds),
                log_tail=inference_server.log_tail(log_path),
                error_line=None if timed_out else script_error_line(log, SCRIPT_NAME),
            )
        progress(f"Server ready in {ready_seconds:.1f} s; sending the request to /score")
        score_started = time.monotonic()
        try:
            status, response = inference_server.score(handle, request_body, timeout=timeout_seconds)
        except ScoringServerError as exc:
            return result(
                False,
                "score",
                f"/score gave no answer within {timeout_seconds:.0f} s, or the server died: "
                f"{exc.__cause__ or exc}. Check run() for endless loops.",
                log_tail=inference_server.log_tail(log_path),
                ready_seconds=ready_seconds,
            )
        score_seconds = time.monotonic() - score_started
        fields = {
            "status_code": status,
            "response": response,
            "log_tail": inference_server.log_tail(log_path),
            "ready_seconds": ready_seconds,
            "score_seconds": score_seconds,
        }
        if status >= 400:
            log = _read(log_path)
            message = _score_failure(status, response, log)
            line = script_error_line(log, SCRIPT_NAME) if status >= 500 else None
            return result(False, "score", message, error_line=line, **fields)
        return result(
            True,
            "done",
            f"The server started in {ready_seconds:.1f} s and /score answered {status} in "
            f"{score_seconds * 1000:.0f} ms.",
            **fields,
        )
    finally:
        if handle is not None:
            inference_server.stop(handle, grace_seconds=_STOP_GRACE_SECONDS)
        shutil.rmtree(run_dir, ignore_errors=True)


def _run_folder(work_dir: Path) -> Path:
    work_dir.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=work_dir, prefix="validate-"))


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def exception_line(log: str) -> str | None:
    """The script's own exception in a log ("ValueError: boom"), not the server's wrapper."""
    candidates = [
        line.strip()
        for line in log.splitlines()
        if _EXCEPTION_LINE.match(line.strip())
        and not any(marker in line for marker in _SERVER_EXCEPTIONS)
    ]
    return candidates[-1] if candidates else None


def _start_failure(log: str, still_running: bool, timeout_seconds: float) -> str:
    if still_running:
        return (
            f"The server was not ready within {timeout_seconds:.0f} s: init() (or the script's "
            "import) is still running. Look for an endless loop or a slow download in init(), "
            "or allow more time."
        )
    if "Connection in use" in log:
        return "The server's port was taken by another program meanwhile. Validate again."
    if "does not have a run() function" in log:
        return "The script has no run() function. Add `def run(raw_data):` that returns the answer."
    if "does not have a init() function" in log:
        return "The script has no init() function. Add `def init():` that loads the model."
    for line in log.splitlines():
        if "UserScriptError: run()" in line:  # run()'s parameters cannot be called by the server
            return f"run() cannot be called by the server: {line.split('UserScriptError: ')[-1]}"
    raised = exception_line(log) or "an exception (see the log)"
    if "Failed to import user script" in log:
        return f"The script raised while being imported: {raised}"
    if "User's init function failed" in log:
        return f"init() raised {raised}"
    return f"The server stopped before it was ready: {raised}"


def _score_failure(status: int, response: Any, log: str) -> str:
    body = response.get("message", response) if isinstance(response, dict) else response
    if status >= 500:
        raised = exception_line(log)
        if raised:
            return f"/score answered {status}: run() raised {raised}"
    return f"/score answered {status}: {body}"


# ----------------------------------------------------------------------------- batch


def validate_batch_script(
    source: str,
    model_path: Path,
    example_frame: pd.DataFrame,
    work_dir: Path,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    progress: Callable[[str], None] = lambda message: None,
    read_roots: Sequence[Path] = (),
) -> ValidationResult:
    """Run a batch script as a batch deployment would, on the example written as a CSV file:
    init(), then run([that file]) in a child process; check one output row per input row. The
    script reads its run folder and `read_roots` (a model environment) only."""
    started = time.monotonic()

    def result(ok: bool, stage: str, message: str, **fields: Any) -> ValidationResult:
        fields.setdefault("response", None)
        fields.setdefault("log_tail", "")
        return ValidationResult(
            ok, stage, message, status_code=None, seconds=time.monotonic() - started, **fields
        )

    progress("Checking the syntax")
    try:
        check_syntax(source)
    except ScriptSyntaxError as exc:
        return result(
            False,
            "syntax",
            f"The script is not valid Python: {exc}",
            error_line=getattr(exc, "lineno", None),
        )

    run_dir = _run_folder(work_dir)
    try:
        script = run_dir / BATCH_SCRIPT_NAME
        script.write_text(source, encoding="utf-8")
        model_dir = inference_server.stage_model(
            model_path, run_dir / MODELS_FOLDER, folder_name=AZURE_MODEL_FOLDER
        )
        inputs = run_dir / "inputs"
        inputs.mkdir()
        csv_path = inputs / "example.csv"
        example_frame.to_csv(csv_path, index=False)
        result_path = run_dir / "result.json"
        log_path = run_dir / "batch.log"
        progress("Running init() and run() on the example file")
        code = _run_driver(
            script, model_dir, result_path, [csv_path], log_path, timeout_seconds, read_roots
        )
        log = _read(log_path)
        tail = inference_server.log_tail(log_path)
        if code is None:
            stage = _last_stage(log)
            where = "init()" if stage in ("import", "init") else "run()"
            return result(
                False,
                "start" if where == "init()" else "score",
                f"{where} did not finish within {timeout_seconds:.0f} s, so it was stopped. Look "
                "for an endless loop.",
                log_tail=tail,
            )
        if code != 0:
            return result(
                False,
                *_batch_failure(log, code),
                log_tail=tail,
                error_line=script_error_line(log, BATCH_SCRIPT_NAME),
            )
        frame = pd.read_json(result_path, orient="split")
        records = json.loads(frame.head(100).to_json(orient="records"))
        if len(frame) != len(example_frame):
            return result(
                False,
                "score",
                f"run() returned {len(frame)} rows for {len(example_frame)} input rows: a batch "
                "script must return one row per input row.",
                response=records,
                log_tail=tail,
            )
        return result(
            True,
            "done",
            f"init() and run() scored the {len(frame)}-row example: one row per input row.",
            response=records,
            log_tail=tail,
        )
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def _run_driver(
    script: Path,
    model_dir: Path,
    result_path: Path,
    files: list[Path],
    log_path: Path,
    timeout_seconds: float,
    read_roots: Sequence[Path] = (),
) -> int | None:
    """The driver's exit code, or None when it ran out of time (it is then killed).

    The driver writes `result_path`, so it may write the run folder (the script's), which holds
    only this run's files."""
    run_dir = script.parent
    private = run_dir / inference_server.PRIVATE_FOLDER
    env = scrubbed_environment(
        home=private,
        temp=private,
        extra={"AZUREML_MODEL_DIR": str(model_dir), "PYTHONUNBUFFERED": "1"},
    )
    command = [sys.executable, "-m", "deploystudio.customization.batch_driver", str(script)]
    command += [str(result_path), *map(str, files)]
    access = Access.of(read=[model_dir, *files, *read_roots], write=[run_dir, private])
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            sandboxed_command(command, access),
            env=env,
            cwd=script.parent,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        return process.wait(timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        return None
    finally:
        # The whole group: whatever the script started goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _last_stage(log: str) -> str:
    stages = [
        line.split(STAGE_MARKER, 1)[1].strip() for line in log.splitlines() if STAGE_MARKER in line
    ]
    return stages[-1] if stages else "import"


def _batch_failure(log: str, code: int) -> tuple[str, str]:
    stage = _last_stage(log)
    if code == MISSING_FUNCTION_EXIT and stage.startswith("missing-"):
        name = stage.removeprefix("missing-")
        signature = "run(mini_batch)" if name == "run" else "init()"
        return "start", f"The script has no {name}() function. Add `def {signature}:`."
    raised = exception_line(log) or f"an error (exit code {code}; see the log)"
    if stage == "import":
        return "start", f"The script raised while being imported: {raised}"
    if stage == "init":
        return "start", f"init() raised {raised}"
    return "score", f"run() raised {raised}"
