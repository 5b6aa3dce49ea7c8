"""One real SQLite MLflow registry per test session, seeded by the same code as `seed-demo`."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from deploystudio.config import Settings, load_settings
from deploystudio.demo import seed_demo
from deploystudio.registry import Registry

REPO_ROOT = Path(__file__).resolve().parents[1]
AZURE_FIXTURES = REPO_ROOT.parent / "shared" / "fixtures" / "azureml-examples"
AZURE_DIABETES_MODEL = AZURE_FIXTURES / "sklearn-diabetes" / "model"
NO_SECRETS = Path("/nonexistent/secrets.toml")


def settings_for(home: Path, **extra: str) -> Settings:
    return load_settings(environ={"DEPLOYSTUDIO_HOME": str(home), **extra}, secrets_path=NO_SECRETS)


@pytest.fixture(scope="session")
def studio_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("studio")
    # Pages read settings from the environment: point them at this session's registry.
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("MLFLOW_REGISTRY_URI", None)
    os.environ["DEPLOYSTUDIO_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def settings(studio_home: Path) -> Settings:
    return settings_for(studio_home)


@pytest.fixture(scope="session")
def registry(settings: Settings) -> Registry:
    return Registry(settings.tracking_uri, settings.registry_uri)


@pytest.fixture(scope="session")
def seeded(settings: Settings, registry: Registry) -> list[str]:
    """The demo versions registered in this session's registry."""
    return seed_demo(settings, registry)


@pytest.fixture(scope="session")
def old_stack(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The old stack's environment (tests.environments_support.OLD_STACK: MLflow 2.17,
    scikit-learn 1.1.3, pandas 1.5, NumPy 1.26), built by the product with uv, and two models
    trained and logged inside it at test time (never committed): `folder` (a LogisticRegression)
    and `boosted` (gradient boosting, whose pickle the app's scikit-learn cannot read).

    Built once per run, in a home shared by every module that asks (the worker's, batch's and
    Azure export's tests) and by the xdist workers: the first to ask builds while holding a
    lock, the others wait and reuse it (a build of this stack is most of those modules' time).
    """
    from deploystudio.environments import (
        PlanInputs,
        ensure,
        environments_root,
        lookup_key,
        plan_environment,
    )
    from tests.environments_support import (
        OLD_STACK,
        SKLEARN_FLAVOR,
        TRAIN,
        once_per_run,
        uv_cache_set,
        write_model,
    )

    def make(folder: Path) -> dict:
        home = folder / "home"
        declared = write_model(folder / "declared", OLD_STACK, flavors=SKLEARN_FLAVOR)
        started = time.perf_counter()
        with uv_cache_set(tmp_path_factory):
            plan = plan_environment(PlanInputs.from_folder(declared), environments_root(home))
            environment = ensure(plan, home)
        print(f"old-stack environment: planned and built in {time.perf_counter() - started:.1f} s")
        model = folder / "trained" / "model"
        model.parent.mkdir()
        done = subprocess.run(
            [str(environment.python), "-c", TRAIN, str(model), OLD_STACK.replace("\n", " ")],
            capture_output=True, text=True, timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        facts = json.loads(done.stdout.strip().splitlines()[-1])
        return {"home": str(home), "key": environment.key, "folder": str(model), **facts}

    facts = once_per_run(tmp_path_factory, "old-stack", make)
    assert facts["versions"] == ["2.17.2", "1.1.3", "1.5.3"]
    home = Path(facts["home"])
    environment = lookup_key(home, facts["key"])
    assert environment is not None, f"the old-stack environment {facts['key']} is gone"
    folder = Path(facts["folder"])
    return {**facts, "home": home, "folder": folder, "plain": folder,
            "boosted": Path(f"{folder}-boosted"), "environment": environment}


@pytest.fixture
def azure_diabetes_model() -> Path:
    if not AZURE_DIABETES_MODEL.is_dir():
        pytest.fail(f"The shared Azure fixtures are missing: {AZURE_DIABETES_MODEL}")
    return AZURE_DIABETES_MODEL


# -- the reliability figures (tests/reliability/figures.py) -------------------------------------
# Here, not in tests/reliability/conftest.py: under pytest-xdist the controller process loads
# only this conftest, and it is the controller that prints the table.


def pytest_sessionfinish(session: pytest.Session) -> None:
    from tests.reliability.figures import FIGURES

    worker_output = getattr(session.config, "workeroutput", None)
    if worker_output is not None:  # an xdist worker: its figures go to the controller
        worker_output["reliability_figures"] = json.dumps(FIGURES.as_plain())


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """xdist: a worker has finished; add its figures to the controller's."""
    from tests.reliability.figures import FIGURES

    figures = getattr(node, "workeroutput", {}).get("reliability_figures")
    if figures:
        FIGURES.merge(json.loads(figures))


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    from tests.reliability.figures import FIGURES, Figures, render

    if hasattr(config, "workerinput"):
        return
    rows = FIGURES.as_plain()
    target = os.environ.get("RELIABILITY_FIGURES")
    if target and rows:
        # Runs that share one file add up (`make test` scans for secrets in a second session).
        total = Figures()
        previous = Path(target).read_text() if Path(target).is_file() else ""
        if previous.strip():
            total.merge(json.loads(previous))
        total.merge(rows)
        rows = total.as_plain()
        Path(target).write_text(json.dumps(rows, indent=2))
    if rows:
        terminalreporter.section("reliability figures")
        terminalreporter.write_line(render(rows))
