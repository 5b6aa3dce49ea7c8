"""Environment builds with the real uv: one environment from two builders, a killed build never
taken for a ready one, a fast cached lookup, `env list` and `env prune`."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploystudio.cli.main import main
from deploystudio.environments import (
    PlanInputs,
    ensure,
    environments_root,
    lookup,
    plan_environment,
)
from deploystudio.environments.catalog import list_environments
from deploystudio.errors import EnvironmentBuildError
from tests.environments_support import use_session_uv_cache, write_model

REPO_ROOT = Path(__file__).resolve().parents[1]

# A builder in its own process: waits for the `go` file, then builds; with a `pause` file, it
# stops for `seconds` when it starts installing (and says so by writing that file).
BUILDER = """
import json, sys, time
from pathlib import Path
from deploystudio.environments import PlanInputs, ensure, environments_root, plan_environment
folder, home, go, pause, seconds = sys.argv[1:6]
home = Path(home)
plan = plan_environment(PlanInputs.from_folder(Path(folder)), environments_root(home))
while not Path(go).exists():
    time.sleep(0.01)
said = []
def progress(message):
    said.append(message)
    if pause != "-" and message.startswith("Installing"):
        Path(pause).write_text("installing")
        time.sleep(float(seconds))
environment = ensure(plan, home, progress=progress)
print(json.dumps({"built_now": environment.built_now, "root": str(environment.root),
                  "said": said}))
"""


@pytest.fixture(scope="module", autouse=True)
def uv_cache(tmp_path_factory: pytest.TempPathFactory):
    yield from use_session_uv_cache(tmp_path_factory)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("env-home")


def start_builder(folder: Path, home: Path, go: Path, pause: Path | None, seconds: float = 0):
    return subprocess.Popen(
        [sys.executable, "-c", BUILDER, str(folder), str(home), str(go), str(pause or "-"),
         str(seconds)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        start_new_session=True,  # its own process group: kill -9 reaches uv too
    )


def run_in(environment, code: str) -> str:
    done = subprocess.run(
        [str(environment.python), "-c", code], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def env_folders(home: Path) -> list[str]:
    root = environments_root(home)
    return sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != "plans")


def test_build_then_cached_lookup_is_fast(home, tmp_path):
    folder = write_model(tmp_path / "six-model", "six==1.16.0\n")
    inputs = PlanInputs.from_folder(folder)
    assert lookup(inputs, home) is None
    plan = plan_environment(inputs, environments_root(home))
    said: list[str] = []
    environment = ensure(plan, home, progress=said.append)
    assert environment.built_now and environment.key == plan.key
    assert run_in(environment, "import six, sys; print(six.__version__, sys.prefix)") == (
        f"1.16.0 {environment.root / 'venv'}"
    )
    assert any("six==1.16.0" in line for line in said)  # uv's progress reached the callback
    log = environment.log.read_text()
    assert "+ six==1.16.0" in log and "Ready: 1 package(s)" in log
    timings = []
    for _ in range(20):
        started = time.perf_counter()
        found = lookup(PlanInputs.from_folder(folder), home)
        timings.append(time.perf_counter() - started)
        assert found is not None and found.python == environment.python
    median = statistics.median(timings)
    slowest = max(timings) * 1000
    print(f"cached environment lookup: median {median * 1000:.2f} ms, slowest {slowest:.2f} ms")
    assert median < 0.050
    again = ensure(plan, home)
    assert not again.built_now and again.root == environment.root


def test_two_builders_of_one_environment_make_one(home, tmp_path):
    folder = write_model(tmp_path / "packaging-model", "packaging==23.2\n")
    plan = plan_environment(PlanInputs.from_folder(folder), environments_root(home))
    go = tmp_path / "go"
    # Whoever gets the lock first pauses 1.5 s while installing: the other arrives meanwhile.
    builders = [start_builder(folder, home, go, tmp_path / f"pause-{i}", 1.5) for i in range(2)]
    go.write_text("go")
    results = []
    for builder in builders:
        out, err = builder.communicate(timeout=300)
        assert builder.returncode == 0, err
        results.append(json.loads(out))
    assert sorted(r["built_now"] for r in results) == [False, True]
    assert results[0]["root"] == results[1]["root"] == str(environments_root(home) / plan.key)
    waiter = next(r for r in results if not r["built_now"])
    assert any("Another process is building" in m for m in waiter["said"])
    log = (environments_root(home) / plan.key / "build.log").read_text()
    assert log.count("Creating a Python") == 1
    assert env_folders(home).count(plan.key) == 1


def test_killed_build_is_not_taken_as_ready_and_the_next_build_succeeds(home, tmp_path):
    folder = write_model(tmp_path / "killed-model", "six==1.16.0\npackaging==24.0\n")
    inputs = PlanInputs.from_folder(folder)
    plan = plan_environment(inputs, environments_root(home))
    go, pause = tmp_path / "go", tmp_path / "pause"
    go.write_text("go")
    builder = start_builder(folder, home, go, pause, 120)
    deadline = time.monotonic() + 120
    while not pause.exists():
        assert builder.poll() is None, builder.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(builder.pid, signal.SIGKILL)  # kill -9 of the builder, half way
    builder.wait(timeout=30)
    folder_left = environments_root(home) / plan.key
    assert (folder_left / "venv").is_dir()  # the half-built environment is there...
    assert lookup(inputs, home) is None  # ...and is not taken for a ready one
    state = {r.key: r.state for r in list_environments(home)}
    assert state[plan.key] == "unfinished"
    said: list[str] = []
    environment = ensure(plan, home, progress=said.append)
    assert environment.built_now and any("unfinished" in m for m in said)
    assert run_in(environment, "import six, packaging; print(packaging.__version__)") == "24.0"
    assert lookup(inputs, home) == dataclasses.replace(environment, built_now=False)


def test_env_list_and_prune(home, tmp_path, monkeypatch, capsys):
    folder = write_model(tmp_path / "broken-model", "six==1.16.0\n")
    plan = plan_environment(PlanInputs.from_folder(folder), environments_root(home))
    # A plan whose lock names a release that does not exist: the build fails, the log stays.
    broken = dataclasses.replace(plan, locked=["six==99.0.0"], model_uri=str(folder))
    with pytest.raises(EnvironmentBuildError, match="Build log"):
        ensure(broken, home)
    monkeypatch.setenv("DEPLOYSTUDIO_HOME", str(home))
    assert main(["env", "list", "--json"]) == 0
    records = {r["key"]: r for r in json.loads(capsys.readouterr().out)}
    assert records[broken.key]["state"] == "failed"
    assert "six==99.0.0" in Path(records[broken.key]["log"]).read_text()
    ready = [r for r in records.values() if r["state"] == "ready"]
    assert ready and all(r["size_bytes"] > 100_000 and r["models"] for r in ready)
    assert main(["env", "list"]) == 0
    listing = capsys.readouterr().out
    assert "failed" in listing and "environment(s)" in listing and "six-model" in listing

    assert main(["env", "prune"]) == 0  # ready ones were used today: only the failed build goes
    assert f"Removed {broken.key}" in capsys.readouterr().out
    assert broken.key not in env_folders(home)
    assert set(env_folders(home)) == {r["key"] for r in ready}

    assert main(["env", "prune", "--unused-days", "0", "--dry-run"]) == 0
    assert f"Would remove {len(ready)} environment(s)" in capsys.readouterr().out
    assert main(["env", "prune", "--unused-days", "0"]) == 0
    assert env_folders(home) == []
    assert list((environments_root(home) / "plans").glob("*.json")) == []
    assert lookup(PlanInputs.from_folder(folder), home) is None


SKLEARN_FIT = (
    "import numpy, sklearn; from sklearn.linear_model import LogisticRegression; "
    "model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1]); "
    "print(sklearn.__version__, numpy.__version__.split('.')[0], model.predict([[2.5]])[0])"
)


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="wheels differ by Python")
def test_real_sklearn_model_environment_and_the_import_check(home, tmp_path):
    flavors = "  sklearn:\n    sklearn_version: 1.1.2\n    serialization_format: cloudpickle\n"
    folder = write_model(tmp_path / "sk", "scikit-learn==1.1.2\n", flavors=flavors)
    plan = plan_environment(PlanInputs.from_folder(folder), environments_root(home))
    assert any("released before NumPy 2" in note for note in plan.notes)
    numpy_pin = next(p for p in plan.locked if p.startswith("numpy=="))
    assert numpy_pin.startswith("numpy==1.")
    environment = ensure(plan, home)
    assert run_in(environment, SKLEARN_FIT) == "1.1.3 1 1"
    # The same packages next to NumPy 2 install fine but cannot import: not ready, and said so.
    locked = [p for p in plan.locked if not p.startswith("numpy==")] + ["numpy==2.2.6"]
    numpy2 = dataclasses.replace(plan, locked=locked)
    with pytest.raises(EnvironmentBuildError, match=r"cannot import.*scikit-learn.*numpy<2"):
        ensure(numpy2, home)
    assert {r.key: r.state for r in list_environments(home)}[numpy2.key] == "failed"


def test_unreachable_index_in_a_build_is_a_failed_build_with_its_log(home, tmp_path, monkeypatch):
    folder = write_model(tmp_path / "offline", "six==1.16.0\nidna==3.4\n")
    plan = plan_environment(PlanInputs.from_folder(folder), environments_root(home))
    monkeypatch.setenv("UV_DEFAULT_INDEX", "http://user:s3cret-pw@127.0.0.1:9/simple")
    monkeypatch.setenv("UV_HTTP_RETRIES", "0")
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "empty-cache"))
    from deploystudio.errors import PackageIndexUnreachableError

    with pytest.raises(PackageIndexUnreachableError, match="--env app"):
        ensure(plan, home)
    record = {r.key: r for r in list_environments(home)}[plan.key]
    assert record.state == "failed" and "could not be reached" in record.reason
    assert "s3cret-pw" not in record.log.read_text() + record.reason
    assert lookup(PlanInputs.from_folder(folder), home) is None
