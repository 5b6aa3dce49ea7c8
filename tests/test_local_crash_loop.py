"""A model server that crash-loops while starting fails its deployment at the first repeated
crash, naming the crash (signal, version skew) with the log tail, instead of waiting out the
start timeout (issue 19, part 5). Real models whose load crashes, real local endpoints."""

from __future__ import annotations

import time
from pathlib import Path

import mlflow
import pytest

from deploystudio.deployment.base import DeploymentState
from deploystudio.deployment.local.crashes import CrashWatch
from deploystudio.deployment.local.target import LocalTarget
from deploystudio.environment import installed_version
from tests.conftest import settings_for

START_TIMEOUT = 400.0  # far above a crash loop's first two deaths, even on a loaded machine
SAVED_SKLEARN = "1.5.2"  # not the app's: the crash happens while versions differ


@pytest.fixture(scope="module")
def aborting_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    class AbortingModel(mlflow.pyfunc.PythonModel):
        """Loads as a library that cannot read its file does: a native abort. Defined here so
        that cloudpickle saves it by value (the server cannot import the tests)."""

        def load_context(self, context):
            import os

            os.abort()

        def predict(self, context, model_input):
            return model_input

    folder = tmp_path_factory.mktemp("aborting") / "model"
    pins = [f"mlflow=={installed_version('mlflow')}",
            f"cloudpickle=={installed_version('cloudpickle')}",
            f"scikit-learn=={SAVED_SKLEARN}"]
    mlflow.pyfunc.save_model(str(folder), python_model=AbortingModel(), pip_requirements=pins)
    return folder


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory):
    target = LocalTarget(
        settings_for(tmp_path_factory.mktemp("crash-home")), start_timeout_seconds=START_TIMEOUT
    )
    yield target
    target.stop_all()


# gunicorn restarts a crashed worker (Azure ML's inference server); uvicorn's supervisor
# starts several workers for MLflow 3's scoring server.
@pytest.mark.parametrize(("runtime", "workers"), [("azureml", 1), ("mlflow", 2)])
def test_a_crash_looping_server_fails_at_its_first_repeated_crash(
    runtime, workers, aborting_model, target
):
    endpoint = f"crash-{runtime}"
    target.create_endpoint(endpoint)
    started = time.monotonic()
    deployment = target.create_deployment(
        "blue", str(aborting_model), endpoint,
        {"runtime": runtime, "settings": {"instance_count": workers, "environment": "app"}},
    )
    seconds = time.monotonic() - started
    assert deployment.state is DeploymentState.FAILED
    assert seconds < START_TIMEOUT / 3, deployment.reason
    reason = deployment.reason or ""
    assert "crash-looped while starting" in reason
    assert "killed by SIGABRT (a native crash" in reason
    assert "not ready within" not in reason  # it did not wait out the timeout
    # In the app's environment, with scikit-learn saved at another version: skew is offered.
    here = installed_version("scikit-learn")
    assert f"version skew: scikit-learn {SAVED_SKLEARN} when saved, {here} here" in reason
    assert "--env model" in reason
    assert deployment.log_tail and "Server log" in deployment.log_tail
    assert "Fatal Python error: Aborted" in Path(deployment.log_path).read_text()
    assert deployment.pid is None or not _alive(deployment.pid)  # the server was stopped


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie waits to be reaped by its parent: it is gone


def test_one_death_is_not_a_loop_and_a_graceful_stop_is_no_crash(tmp_path):
    log = tmp_path / "server.log"
    # gunicorn's own lines (arbiter.py), as a worker is stopped, then crashes once.
    log.write_text(
        "[2026-12-05 05:06:01 +0000] [17171] [INFO] Worker (pid:17189) was sent SIGTERM!\n"
        "[2026-12-05 05:06:12 +0000] [17171] [WARNING] Worker (pid:17190) was sent SIGSEGV!\n"
    )
    watch = CrashWatch(log)
    assert watch.repeated() is None
    with log.open("a") as handle:  # a partial line is not read as a death yet
        handle.write("[2026-12-05 05:06:23 +0000] [17171] [ERROR] Worker (pid:17191) exited")
    assert watch.repeated() is None
    with log.open("a") as handle:
        handle.write(" with code 1.\n")
    assert watch.repeated() == (
        "its workers crashed 2 times while loading; the last one exited with code 1."
    )
