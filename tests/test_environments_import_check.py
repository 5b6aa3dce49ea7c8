"""The build's import check runs the new environment's code behind the sandbox (issue 19):
package code that runs at interpreter start (a `.pth` file) cannot read outside the allowed
roots, nor see the app's variables."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import uv

from deploystudio.environments.import_check import check_environment, import_failures
from deploystudio.worker.sandbox import landlock_abi

# A package whose import reports what its .pth file could read when the interpreter started.
PROBE_PTH = "import os; exec({code!r})\n"
PTH_CODE = """
try:
    os.environ["PROBE_SAW"] = "read " + open({secret!r}).read()
except OSError as exc:
    os.environ["PROBE_SAW"] = type(exc).__name__
os.environ["PROBE_SAW"] += " token=" + os.environ.get("PROBE_APP_TOKEN", "none")
try:
    open({planted!r}, "w").close()
except OSError:
    pass
"""
PROBE_INIT = 'import os\nraise ImportError(os.environ.get("PROBE_SAW", "no .pth ran"))\n'


@pytest.fixture
def probe_environment(tmp_path: Path) -> tuple[Path, Path]:
    """A real virtualenv (uv, no index needed) with a `probe` distribution and a .pth file that
    tries to read `secret.txt`, which lies outside the environment's folder."""
    secret = tmp_path / "secret.txt"
    secret.write_text("hunter2", encoding="utf-8")
    root = tmp_path / "environment"
    venv = root / "venv"
    subprocess.run(
        [uv.find_uv_bin(), "venv", str(venv), "--no-python-downloads", "--no-project", "-q"],
        check=True,
        env={**os.environ, "VIRTUAL_ENV": ""},
    )
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    site = Path(purelib)
    (site / "probe.pth").write_text(
        PROBE_PTH.format(
            code=PTH_CODE.format(secret=str(secret), planted=str(tmp_path / "planted"))
        ),
        encoding="utf-8",
    )
    (site / "probe").mkdir()
    (site / "probe" / "__init__.py").write_text(PROBE_INIT, encoding="utf-8")
    info = site / "probe-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: probe\nVersion: 1.0\n")
    (info / "top_level.txt").write_text("probe\n")
    return python, root


def test_the_pth_file_reads_the_secret_when_run_unsandboxed(probe_environment, monkeypatch):
    # The control: the probe works, so the next test can fail.
    python, _ = probe_environment
    monkeypatch.setenv("PROBE_APP_TOKEN", "app-secret")
    done = subprocess.run(
        [str(python), "-c", "import os; print(os.environ['PROBE_SAW'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "read hunter2 token=app-secret"
    assert (python.parents[3] / "planted").exists()


@pytest.mark.skipif(not landlock_abi(), reason="the kernel has no Landlock")
def test_the_import_check_runs_package_code_behind_the_sandbox(probe_environment, monkeypatch):
    python, root = probe_environment
    monkeypatch.setenv("PROBE_APP_TOKEN", "app-secret")
    failures = import_failures(python, ["probe"], root)
    assert failures.startswith("probe (import probe): ImportError: ")
    assert "hunter2" not in failures and "app-secret" not in failures
    assert "PermissionError token=none" in failures
    assert not (root.parent / "planted").exists()  # nor write outside
    # The environment itself is writable during the check: its bytecode is kept for later starts.
    site = next((root / "venv" / "lib").glob("python3*/site-packages"))
    assert list((site / "probe" / "__pycache__").glob("__init__.*.pyc"))


def test_an_environment_that_imports_passes(probe_environment):
    python, root = probe_environment
    # Nothing to import, and a distribution the environment does not have: nothing failed.
    assert import_failures(python, [], root) == ""
    assert import_failures(python, ["not-installed"], root) == ""


# What XGBoost 1.4's compat.py does as it is imported: with no pkg_resources the `except`
# clause itself fails (NameError), so `import xgboost` fails in a virtualenv without setuptools.
OLD_FRAMEWORK_INIT = """
try:
    import pkg_resources
    pkg_resources.get_distribution('dask')
    DASK_INSTALLED = True
except pkg_resources.DistributionNotFound:
    DASK_INSTALLED = False
"""


def test_a_framework_that_needs_pkg_resources_fails_the_check_saying_what_to_add(tmp_path):
    root = tmp_path / "environment"
    venv = root / "venv"
    subprocess.run(
        [uv.find_uv_bin(), "venv", str(venv), "--no-python-downloads", "--no-project", "-q"],
        check=True,
        env={**os.environ, "VIRTUAL_ENV": ""},
    )
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert not (site / "pkg_resources").exists()  # uv seeds no setuptools
    (site / "oldframework").mkdir()
    (site / "oldframework" / "__init__.py").write_text(OLD_FRAMEWORK_INIT, encoding="utf-8")
    info = site / "oldframework-1.4.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: oldframework\nVersion: 1.4.2\n")
    # As XGBoost 1.4's: a name that is no module (its shared library) listed first.
    (info / "top_level.txt").write_text("liboldframework\noldframework\n")
    failures = import_failures(venv / "bin" / "python", ["oldframework"], root)
    assert failures.startswith("oldframework (import oldframework): NameError: ")
    assert "pkg_resources" in failures and "add setuptools<82 to its requirements" in failures


def _package(site: Path, name: str, files: dict[str, str]) -> None:
    """A distribution `name` whose package holds `files` (relative path -> source)."""
    for relative, source in files.items():
        path = site / name / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "top_level.txt").write_text(f"{name}\n")


def test_the_check_compiles_what_a_server_start_imports_and_runs_no_main(probe_environment):
    """After the check: bytecode for the modules asked and for every module of a server
    package (the sandboxed servers cannot write it), a __main__ compiled but never run, a module
    that raises skipped; the answer survives a package that replaces print; no MLflow here, so
    no serving command, and why."""
    python, root = probe_environment
    site = next((root / "venv" / "lib").glob("python3*/site-packages"))
    (site / "probe.pth").unlink()  # the probe's own failure is the test above
    (site / "probe" / "__init__.py").write_text("", encoding="utf-8")
    ran = root / "main-ran"
    _package(site, "srv", {
        "__init__.py": "import builtins\nbuiltins.print = lambda *a, **k: None\n",
        "__main__.py": f"open({str(ran)!r}, 'w').close()\n",
        "protocols/__init__.py": "",
        "protocols/http.py": "import json\n",
        "broken.py": "raise ImportError('an optional dependency is missing')\n",
    })
    _package(site, "flavor", {"__init__.py": "", "loader.py": "", "unused.py": ""})
    outcome = check_environment(
        python,
        ["probe"],
        root,
        warm_modules=["flavor.loader", "not_installed.module"],
        server_distributions=["srv"],
        serve_arguments=["/model", "1", "127.0.0.1", "1"],
    )
    assert outcome.failures == ""
    assert outcome.serve is None and "No module named 'mlflow'" in outcome.serve_error

    def compiled(*parts: str) -> bool:
        folder = site.joinpath(*parts[:-1], "__pycache__")
        return bool(list(folder.glob(f"{parts[-1]}.*.pyc")))

    assert compiled("flavor", "loader") and not compiled("flavor", "unused")
    assert compiled("srv", "__init__") and compiled("srv", "protocols", "http")
    assert compiled("srv", "__main__") and not ran.exists()
    # srv.broken raised (walked before srv.protocols): skipped, and the walk went on.
    # A failed check stops there: nothing else is imported.
    shutil.rmtree(site / "flavor" / "__pycache__")
    (site / "probe" / "__init__.py").write_text("raise ImportError('broken')\n")
    failed = check_environment(python, ["probe"], root, warm_modules=["flavor.loader"],
                               serve_arguments=["/model", "1", "127.0.0.1", "1"])
    assert failed.failures == "probe (import probe): ImportError: broken"
    assert failed.serve is None and not compiled("flavor", "loader")
