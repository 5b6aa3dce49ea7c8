"""The last step of an environment build: can the new environment import what the model needs?

It runs the new environment's Python, so the model's packages' code: a `.pth` file or a
`sitecustomize` runs at interpreter start, and importing a framework runs its `__init__`. That
is model code as much as a pickle is, so it runs the way the worker runs model code: behind the
sandbox launcher (`deploystudio.worker.sandbox`: read the environment and the system, write a
scratch folder only) with the allow-listed environment (`deploystudio.worker.isolation`: not the
app's variables, which hold the package index's credentials during a build).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from deploystudio.environments.uv import redact_urls
from deploystudio.worker.isolation import scrubbed_environment
from deploystudio.worker.sandbox import Access, sandboxed_command

TIMEOUT_SECONDS = 300

# Imports, in the new environment, the top-level modules of the given distributions: an
# environment that cannot import its framework is not ready (a package compiled for NumPy 1 next
# to NumPy 2 installs fine and fails only here).
_CHECK = """
import importlib, importlib.metadata as md, importlib.util, json, sys
wanted = set(json.loads(sys.argv[1]))
modules = {}
for module, dists in md.packages_distributions().items():
    for dist in dists:
        name = dist.lower().replace("_", "-").replace(".", "-")
        if name in wanted and module.isidentifier() and not module.startswith("_"):
            modules.setdefault(name, set()).add(module)
failed = []
for dist, names in sorted(modules.items()):
    # The module named like the distribution first; names that are no module (XGBoost 1.4's
    # RECORD lists its libxgboost.so at the top level) are not imported.
    for module in sorted(names, key=lambda m: (m.replace("_", "-") != dist, m)):
        if importlib.util.find_spec(module) is None:
            continue
        try:
            importlib.import_module(module)
        except Exception as exc:
            failed.append(f"{dist} (import {module}): {type(exc).__name__}: {exc}")
            break
print(json.dumps(failed))
"""


def import_failures(python: Path, distributions: Sequence[str], root: Path) -> str:
    """What the environment under `root` (whose interpreter is `python`, in `root`'s virtualenv
    `.../venv/bin/python`) fails to import of `distributions`' top-level modules, as one line;
    "" when all import."""
    if not distributions:
        return ""
    with tempfile.TemporaryDirectory(prefix="deploystudio-import-check-") as scratch:
        # -I: no PYTHON* variables, no user site, and neither the script's folder nor the
        # working folder on sys.path (the app's folder must not shadow the environment's).
        argv = [str(python), "-I", "-c", _CHECK, json.dumps(list(distributions))]
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
            return f"importing the model's packages took more than {TIMEOUT_SECONDS} s"
    try:
        failed = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return redact_urls(done.stderr.strip()[-500:]) or f"the check exited {done.returncode}"
    text = "; ".join(failed)
    if "numpy" in text.lower() and ("dtype size changed" in text or "NumPy 1.x" in text):
        text += " (a package built for NumPy 1 next to NumPy 2: add numpy<2 to its requirements)"
    if "pkg_resources" in text:
        text += (
            " (pkg_resources comes with setuptools, which removed it in 82: add setuptools<82 "
            "to its requirements)"
        )
    return text
