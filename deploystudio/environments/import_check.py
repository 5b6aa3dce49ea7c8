"""The last step of an environment build: can the new environment import what the model needs?

It runs the new environment's Python, so the model's packages' code: a `.pth` file or a
`sitecustomize` runs at interpreter start, and importing a framework runs its `__init__`. That
is model code as much as a pickle is, so it runs the way the worker runs model code: behind the
sandbox launcher (`deploystudio.worker.sandbox`: read the environment and the system, write a
scratch folder only) with the allow-listed environment (`deploystudio.worker.isolation`: not the
app's variables, which hold the package index's credentials during a build).

The same process, once the check passed, does two more things that would otherwise each cost an
interpreter importing MLflow (seconds on a busy machine):
- asks the environment's MLflow for its scoring server's command (serve_command.py records it);
- imports what a server start imports besides (the scoring server, its server program such as
  uvicorn or gunicorn with its protocol modules, the flavors' MLflow modules, a runtime's extra
  packages), only for their bytecode: the virtualenv is writable here and only here, and the
  sandboxed servers and workers, which cannot write it, would otherwise compile those modules
  again on every start (measured: 4 s of an 8 s warm start). Compiling only what is imported,
  rather than every module installed (`uv pip sync --compile-bytecode`), keeps a cold build
  about as fast as before: a start compiled these anyway.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from deploystudio.environment import FLAVOR_DISTRIBUTIONS
from deploystudio.environments.uv import redact_urls
from deploystudio.worker.isolation import scrubbed_environment
from deploystudio.worker.sandbox import Access, sandboxed_command

TIMEOUT_SECONDS = 300
ANSWER_FILE = "answer.json"

# Runs in the new environment: argv = answer file, the distributions to check, the modules to
# import for their bytecode, the distributions a server runtime adds, get_cmd's arguments (or
# null). Imports the top-level modules of the distributions to check: an environment that cannot
# import its framework is not ready (a package compiled for NumPy 1 next to NumPy 2 installs
# fine and fails only here). The answer goes to a file: an imported package may print, or
# replace print (Azure's inference server does), at any time.
_CHECK = """
import importlib, importlib.metadata as md, importlib.util, json, os, pkgutil, sys
answer_file, wanted, warm, servers, ask = sys.argv[1], *map(json.loads, sys.argv[2:6])
def canonical(dist):
    return dist.lower().replace("_", "-").replace(".", "-")
modules = {}
for module, dists in md.packages_distributions().items():
    for dist in dists:
        if module.isidentifier() and not module.startswith("_"):
            modules.setdefault(canonical(dist), set()).add(module)
failed = []
for dist in sorted(set(wanted)):
    # The module named like the distribution first; names that are no module (XGBoost 1.4's
    # RECORD lists its libxgboost.so at the top level) are not imported.
    names = modules.get(dist, ())
    for module in sorted(names, key=lambda m: (m.replace("_", "-") != dist, m)):
        if importlib.util.find_spec(module) is None:
            continue
        try:
            importlib.import_module(module)
        except Exception as exc:
            failed.append(f"{dist} (import {module}): {type(exc).__name__}: {exc}")
            break
answer = {"failed": failed}
if ask and not failed:
    try:
        from mlflow.pyfunc.scoring_server import get_cmd
        command, env = get_cmd(ask[0], port=ask[1], host=ask[2], nworkers=ask[3])
        answer["serve"] = [command, {k: v for k, v in env.items() if os.environ.get(k) != v}]
        warm.append("*" + command.split()[0])
    except Exception as exc:
        answer["serve_error"] = f"{type(exc).__name__}: {exc}"
warm += ["*" + m for dist in servers for m in sorted(modules.get(canonical(dist), ()))]
def compiled(name):  # bytecode without running the module (a __main__ would start a server)
    try:
        spec = importlib.util.find_spec(name)
        if spec is not None and hasattr(spec.loader, "get_code"):
            spec.loader.get_code(name)
    except Exception:
        pass
def imported(name):
    try:
        return importlib.import_module(name)
    except BaseException:  # a module may exit; what fails here fails at a start too
        return None
if not failed:
    for name in warm:
        whole, name = name.startswith("*"), name.lstrip("*")
        module = imported(name)
        if whole and module is not None and hasattr(module, "__path__"):
            compiled(name + ".__main__")
            for info in pkgutil.walk_packages(module.__path__, name + ".", lambda _: None):
                if not info.name.endswith(".__main__"):
                    imported(info.name)
with open(answer_file, "w") as handle:
    json.dump(answer, handle)
"""


@dataclass(frozen=True)
class CheckOutcome:
    """What the check found: `failures` ("" when everything imported), and the environment's
    MLflow serving command (command, added variables) when asked and it answered, else why not
    in `serve_error`."""

    failures: str
    serve: tuple[str, dict[str, str]] | None = None
    serve_error: str = ""


def check_environment(
    python: Path,
    distributions: Sequence[str],
    root: Path,
    *,
    warm_modules: Sequence[str] = (),
    server_distributions: Sequence[str] = (),
    serve_arguments: Sequence[str] | None = None,
) -> CheckOutcome:
    """Check that the environment under `root` (whose interpreter is `python`, in `root`'s
    virtualenv `.../venv/bin/python`) imports `distributions`' top-level modules; then, if it
    does, ask its MLflow for `get_cmd(*serve_arguments)` (model path, port, host, workers) and
    import `warm_modules`, the server program get_cmd names and `server_distributions`' modules
    (each package whole) for their bytecode. A module that fails there is skipped: a start that
    needs it reports it."""
    with tempfile.TemporaryDirectory(prefix="deploystudio-import-check-") as scratch:
        answer_path = Path(scratch) / ANSWER_FILE
        # -I: no PYTHON* variables, no user site, and neither the script's folder nor the
        # working folder on sys.path (the app's folder must not shadow the environment's).
        argv = [
            str(python), "-I", "-c", _CHECK, str(answer_path),
            *(json.dumps(list(values)) for values in (
                distributions, warm_modules, server_distributions)),
            json.dumps(list(serve_arguments) if serve_arguments is not None else None),
        ]
        # The virtualenv is writable here, and only here: the imports write their bytecode
        # (.pyc) into it, which every later start reuses (the worker and servers read the
        # environment only, and would compile these modules again on every start). The
        # environment is not ready yet, and its own packages can change only themselves.
        venv = python.parent.parent
        access = Access.of(read=[root], write=[scratch, venv])
        command = sandboxed_command(argv, access)
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                cwd=scratch,
                env=scrubbed_environment(home=Path(scratch), temp=Path(scratch)),
                timeout=TIMEOUT_SECONDS,
            )
        except subprocess.TimeoutExpired:
            return CheckOutcome(
                f"importing the model's packages took more than {TIMEOUT_SECONDS} s"
            )
        try:
            answer = json.loads(answer_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            answer = None
    if not isinstance(answer, dict):
        failure = redact_urls(done.stderr.strip()[-500:]) or f"the check exited {done.returncode}"
        return CheckOutcome(failure)
    text = "; ".join(answer.get("failed") or [])
    if "numpy" in text.lower() and ("dtype size changed" in text or "NumPy 1.x" in text):
        text += " (a package built for NumPy 1 next to NumPy 2: add numpy<2 to its requirements)"
    if "pkg_resources" in text:
        text += (
            " (pkg_resources comes with setuptools, which removed it in 82: add setuptools<82 "
            "to its requirements)"
        )
    serve = answer.get("serve")
    if serve is not None:
        command, added = serve
        serve = (str(command), {str(k): str(v) for k, v in added.items()})
    return CheckOutcome(text, serve, str(answer.get("serve_error") or ""))


def flavor_modules(loader_distributions: Sequence[str]) -> list[str]:
    """MLflow's modules that load a model of these frameworks ("scikit-learn" -> mlflow.sklearn,
    "xgboost" -> mlflow.xgboost), with the scoring server: what a start imports on top of the
    framework. A name that is no flavor (cloudpickle) makes a module that fails, skipped."""
    flavors = {distribution: flavor for flavor, distribution in FLAVOR_DISTRIBUTIONS.items()}
    names = [
        flavors.get(name, name.replace("-", "_"))
        for name in loader_distributions
        if name != "mlflow"
    ]
    return ["mlflow.pyfunc.scoring_server", *(f"mlflow.{name}" for name in names)]


def import_failures(python: Path, distributions: Sequence[str], root: Path) -> str:
    """What the environment fails to import of `distributions`' top-level modules, as one
    line; "" when all import (check_environment without the rest)."""
    if not distributions:
        return ""
    return check_environment(python, distributions, root).failures
