"""Build a plan's environment with uv, once, into the data folder; find it again quickly.

Layout under `<home>/environments/`:
    plans/<digest>.json         a model's plan, keyed by its environment files (see plan.py)
    <key>.lock                  flock'd while <key>/ is built or changed
    <key>/venv/                 the virtualenv
    <key>/build.log             uv's output, kept after the build (and after a failure)
    <key>/requirements.lock     exactly what was installed
    <key>/models.json           the models that asked for this environment
    <key>/serve.json            its MLflow's scoring-server command (serve_command.py)
    <key>/ready.json            written last: without it the folder is not an environment

Two builders of one environment take the lock in turn: the second finds `ready.json` and uses
the first one's environment. A builder killed half way leaves a folder without `ready.json`,
which the next builder (holding the lock, so no one else is building it) removes and redoes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from deploystudio.environments.import_check import check_environment, flavor_modules
from deploystudio.environments.plan import EnvironmentPlan, cached_plan
from deploystudio.environments.serve_command import placeholder_arguments, record
from deploystudio.environments.sources import PlanInputs
from deploystudio.environments.uv import index_settings, redact_urls, run_uv, uv_environment
from deploystudio.errors import (
    EnvironmentBlockedError,
    EnvironmentBuildError,
    PackageIndexUnreachableError,
)

READY = "ready.json"
FAILED = "failed.json"
MODELS = "models.json"
LAST_USED = "last-used"
LOG = "build.log"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Environment:
    """A ready environment: run model code with `python`."""

    key: str
    root: Path
    python: Path
    python_version: str
    packages: int
    log: Path
    built_now: bool = False  # this call built it (False: it was there, or another built it)


def environments_root(home: Path) -> Path:
    return home / "environments"


def lookup(inputs: PlanInputs, home: Path) -> Environment | None:
    """The ready environment for a model's inputs, or None; no subprocess, a few small reads
    (the plan was cached when the environment was built)."""
    root = environments_root(home)
    plan = cached_plan(root, inputs)
    key = plan.key if plan is not None else None
    return _ready(root, key) if key else None


def lookup_key(home: Path, key: str) -> Environment | None:
    return _ready(environments_root(home), key)


def _ready(root: Path, key: str) -> Environment | None:
    folder = root / key
    try:
        data = json.loads((folder / READY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    with contextlib.suppress(OSError):
        os.utime(folder / LAST_USED)
    return Environment(
        key=key,
        root=folder,
        python=folder / "venv" / "bin" / "python",
        python_version=data.get("python_version", ""),
        packages=int(data.get("packages", 0)),
        log=folder / LOG,
    )


@contextlib.contextmanager
def _locked(root: Path, key: str, progress: Progress) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{key}.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress("Another process is building this environment; waiting for it.")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def environment_key(plan: EnvironmentPlan, extra_requirements: Sequence[str] = ()) -> str | None:
    """The plan's key; with extra requirements (what a runtime needs next to the model, such
    as the Azure ML inference server), another key derived from both."""
    if plan.key is None or not extra_requirements:
        return plan.key
    text = json.dumps([plan.key, sorted(extra_requirements)])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def ensure(
    plan: EnvironmentPlan,
    home: Path,
    progress: Progress | None = None,
    extra_requirements: Sequence[str] = (),
) -> Environment:
    """The plan's environment, built if it is not there yet. Raises EnvironmentBlockedError for
    a plan that cannot be built, EnvironmentBuildError when uv fails (the log is kept).

    `extra_requirements` ("name==version" lines) are installed after the plan's packages, with
    those held at their versions (uv constraints); they make another environment, keyed by
    both, and its requirements.lock lists everything installed."""
    say = progress or (lambda message: None)
    key = environment_key(plan, extra_requirements)
    if key is None:
        raise EnvironmentBlockedError(
            "This model's environment cannot be built here: " + " ".join(plan.blockers)
            + " Run it in the app's environment with --env app, or re-log it with versions "
            "installable on this machine."
        )
    root = environments_root(home)
    with _locked(root, key, say):
        environment = _ready(root, key)
        built_now = environment is None
        if environment is None:
            environment = _build(plan, root / key, say, tuple(extra_requirements))
        _record_model(root / key, plan.model_uri)
    if built_now:
        return Environment(**{**environment.__dict__, "built_now": True})
    say(f"Using the environment {key} (built before).")
    return environment


def _record_model(folder: Path, model_uri: str) -> None:
    path = folder / MODELS
    try:
        models = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        models = []
    if model_uri not in models:
        _write_json(path, [*models, redact_urls(model_uri)])


def _write_json(path: Path, data: object) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(temporary, path)


def _build(
    plan: EnvironmentPlan, folder: Path, say: Progress, extras: tuple[str, ...] = ()
) -> Environment:
    if folder.exists():
        say("Removing an unfinished or failed build of this environment.")
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    try:
        return _build_in(plan, folder, say, extras)
    except PackageIndexUnreachableError as exc:
        _failed(folder, str(exc))  # recorded as failed, with its log; the message says why
        raise


def _build_in(
    plan: EnvironmentPlan, folder: Path, say: Progress, extras: tuple[str, ...] = ()
) -> Environment:
    started = time.monotonic()
    env = uv_environment()
    with open(folder / LOG, "w", encoding="utf-8") as log:

        def line(text: str) -> None:
            log.write(text + "\n")
            log.flush()
            if text.strip():
                say(text)

        line(f"# {datetime.now(UTC).isoformat(timespec='seconds')} environment {plan.key}")
        line(f"# model {redact_urls(plan.model_uri)}; requirements from {plan.source}")
        line(f"# packages from {index_settings().describe()}")
        line(f"Creating a Python {plan.python.used} virtualenv ({plan.python.path}).")
        venv = folder / "venv"
        created = run_uv(
            ["venv", str(venv), "--python", plan.python.path, "--no-python-downloads",
             "--no-project"],
            env,
            on_line=line,
        )
        if created.returncode != 0:
            raise _failed(folder, f"uv could not create the virtualenv: {created.cause}")
        lock = folder / "requirements.lock"
        lock.write_text("\n".join(plan.locked) + "\n", encoding="utf-8")
        line(f"Installing {len(plan.locked)} package(s).")
        installed = run_uv(
            ["pip", "sync", str(lock), "--python", str(venv / "bin" / "python")],
            env,
            on_line=line,
        )
        if installed.returncode != 0:
            raise _failed(folder, f"uv could not install the packages: {installed.cause}")
        if extras:
            held = folder / "constraints.txt"
            # The versions the model asked for (its direct requirements) stay; the packages they
            # pulled in may move for the extra (the inference server pins its own OpenTelemetry).
            pins = [f"{r.name}=={r.chosen}" for r in plan.requirements if r.chosen]
            held.write_text("\n".join(pins) + "\n", encoding="utf-8")
            _install_extras(extras, venv / "bin" / "python", lock, held, env, line, folder)
        # One sandboxed process checks the imports, asks MLflow for its serving command
        # (serve.json: no start asks it again) and compiles what a server start imports besides
        # (import_check.py says why): one interpreter importing MLflow, not two.
        loader = [r.name for r in plan.requirements if r.loader_imports and r.chosen]
        outcome = check_environment(
            venv / "bin" / "python",
            loader,
            folder,
            warm_modules=flavor_modules(loader),
            server_distributions=[extra.split("==")[0] for extra in extras],
            serve_arguments=placeholder_arguments(),
        )
        record(folder, outcome.serve, outcome.serve_error, line)
        broken = outcome.failures
        if broken:
            line(f"Import check failed: {broken}")
            reason = f"The new environment cannot import what the model needs: {broken}"
            raise _failed(folder, reason)
        seconds = time.monotonic() - started
        line(f"Ready: {len(plan.locked)} package(s) in {seconds:.1f} s.")
    _write_json(folder / "plan.json", plan.to_dict())
    (folder / LAST_USED).touch()
    _write_json(
        folder / READY,
        {
            "key": folder.name,
            "extra_requirements": list(extras),
            "python_version": plan.python.used,
            # What is installed: the plan's packages, plus any extra and what it pulled in.
            "packages": len(lock.read_text(encoding="utf-8").split()),
            "built": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": round(seconds, 1),
        },
    )
    environment = _ready(folder.parent, folder.name)
    assert environment is not None
    return environment


def _install_extras(
    extras: tuple[str, ...],
    python: Path,
    lock: Path,
    held: Path,
    env: dict[str, str],
    line: Progress,
    folder: Path,
) -> None:
    # The model's own requirements stay at their versions (constraints): an extra that needs
    # others fails here, saying which, rather than moving what the model was planned with.
    line(f"Installing what the runtime needs besides: {', '.join(extras)}.")
    added = run_uv(
        ["pip", "install", *extras, "--constraint", str(held), "--python", str(python)],
        env,
        on_line=line,
    )
    if added.returncode != 0:
        raise _failed(folder, f"uv could not install {', '.join(extras)}: {added.cause}")
    # What is installed now, for requirements.lock (uv's freeze: a uv virtualenv has no pip).
    listed = run_uv(["pip", "freeze", "--python", str(python)], env)
    pins = sorted(text.strip() for text in listed.stdout.splitlines() if "==" in text)
    if listed.returncode == 0 and pins:
        lock.write_text("\n".join(pins) + "\n", encoding="utf-8")


def _failed(folder: Path, reason: str) -> EnvironmentBuildError:
    # The half-filled virtualenv goes (it is never used); the log stays to be read.
    shutil.rmtree(folder / "venv", ignore_errors=True)
    _write_json(folder / FAILED, {"reason": reason, "at": datetime.now(UTC).isoformat()})
    log = folder / LOG
    tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-5:]
    return EnvironmentBuildError(
        f"{reason}. Build log: {log} (last lines: {' | '.join(tail)}). Fix the requirement "
        "named there, or run the model in the app's environment with --env app."
    )
