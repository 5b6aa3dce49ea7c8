"""Broken model folders and scoring scripts, run through what the pages run on them.

Every folder of `model_corpus.DAMAGES` is a damaged copy of a good model, registered as a version
in a real (module-scoped SQLite) registry and inspected both by its models:/ URI and as a local
folder; every pyfunc of `PYFUNC_BEHAVIOURS` is predicted through the real prediction worker, as
the Predict page does; every script of `SCRIPTS` is validated in the real Azure ML inference
server, as the Customize page does. Each must end in a DeployStudioError or a report whose
message names the broken file or field, and the outside sentinel must never be read.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient

from deploystudio.config import Settings
from deploystudio.customization.scoring_script import example_request, validate_scoring_script
from deploystudio.errors import (
    DeployStudioError,
    InvalidModelError,
    PredictionError,
    PredictionWorkerError,
)
from deploystudio.inspection import (
    CheckStatus,
    ModelInspection,
    deployability_report,
    inspect_model,
)
from deploystudio.payload_formats import ModelInput
from deploystudio.prediction import local_model_path
from deploystudio.registry import Registry
from deploystudio.worker.process import PredictionWorker
from tests.conftest import settings_for
from tests.reliability.conftest import LONG
from tests.reliability.figures import FIGURES
from tests.reliability.model_corpus import (
    DAMAGES,
    PYFUNC_BEHAVIOURS,
    SCRIPTS,
    SENTINEL_TEXT,
    Behaviour,
    Damage,
    Script,
    files_containing,
    good_frame,
    save_pyfunc_model,
    save_sklearn_model,
    sentinel_folder,
    truncations,
    with_code,
)

SUITE = "model folders and scripts"
# MLflow nags about type hints on every models-from-code pyfunc it saves or loads.
pytestmark = pytest.mark.filterwarnings("ignore:.*Add type hints:UserWarning")
# The hanging model's call gets a short timeout; the others may have to start the worker again
# (importing MLflow takes seconds on a busy machine).
HANG_TIMEOUT_SECONDS = 4.0
CALL_TIMEOUT_SECONDS = 60.0
# Far above what the worker needs with MLflow, pandas and scikit-learn loaded (address space).
WORKER_MEMORY_MB = 3072
SCRIPT_TIMEOUT_SECONDS = 60.0


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


@pytest.fixture(scope="module", autouse=True)
def _measured():
    FIGURES.measured(SUITE, "cases tried", "crashes")


@dataclass(frozen=True)
class Studio:
    base: Path
    settings: Settings
    registry: Registry
    models: Path  # the damaged copies
    good: Path  # the good sklearn model
    outside: Path  # holds the sentinel


@pytest.fixture(scope="module")
def studio(tmp_path_factory) -> Studio:
    """Its own home and registry: the broken versions must not show up in other tests' lists."""
    base = tmp_path_factory.mktemp("model-folders")
    settings = settings_for(base / "home")
    models = base / "models"
    models.mkdir()
    return Studio(
        base=base,
        settings=settings,
        registry=Registry(settings.tracking_uri, settings.registry_uri),
        models=models,
        good=save_sklearn_model(base / "good-sklearn"),
        outside=sentinel_folder(base),
    )


def register(registry: Registry, name: str, folder: Path) -> str:
    client: MlflowClient = registry.client
    client.create_registered_model(name)
    version = client.create_model_version(name, source=str(folder))
    return f"models:/{name}/{version.version}"


def _tried(outcome) -> object:
    """Count one case; an exception that is no DeployStudioError is a crash."""
    FIGURES.add(SUITE, "cases tried")
    try:
        return outcome()
    except DeployStudioError as exc:
        return exc
    except Exception:
        FIGURES.add(SUITE, "crashes")
        raise


def _unhelpful(message: str) -> None:
    FIGURES.add(SUITE, "crashes")
    pytest.fail(message)


def _problems_text(inspection: ModelInspection) -> str:
    """What the page shows about problems: the non-passing checks and the example's error."""
    failing = [c for c in inspection.report if c.status is not CheckStatus.PASS]
    lines = [f"{c.name}: {c.detail} {c.fix}" for c in failing]
    return "\n".join([*lines, inspection.input_example_error or ""])


def _everything_shown(inspection: ModelInspection) -> str:
    env = inspection.environment
    return "\n".join(
        map(
            str,
            [
                inspection.report,
                inspection.flavors,
                inspection.signature,
                inspection.input_example,
                inspection.input_example_params,
                inspection.input_example_error,
                env,
                inspection.artifacts,
            ],
        )
    )


# ----------------------------------------------------------------------------- inspection


def _check_inspection(damage: Damage, call, settings, outside: Path) -> None:
    result = _tried(call)
    if isinstance(result, DeployStudioError):
        shown, problems = str(result), str(result)
    else:
        # The page renders the report again from the inspection: that too must not raise.
        _tried(lambda: deployability_report(result))
        shown, problems = _everything_shown(result), _problems_text(result)
    assert SENTINEL_TEXT not in shown, f"{damage.name}: the outside file was read and shown"
    leaked = files_containing(settings.home, SENTINEL_TEXT)
    assert not leaked, f"{damage.name}: the outside file was copied to {leaked}"
    assert (outside / "sentinel.txt").read_text() == SENTINEL_TEXT
    if damage.names and not any(name in problems for name in damage.names):
        _unhelpful(f"{damage.name}: nothing names {damage.names}:\n{problems}")


@pytest.mark.parametrize(
    "damage", DAMAGES + truncations(40 if LONG else 6), ids=lambda d: _slug(d.name)
)
def test_a_damaged_model_folder_is_reported_by_name(studio: Studio, damage: Damage):
    folder = studio.models / _slug(damage.name)
    shutil.copytree(studio.good, folder)
    damage.apply(folder, studio.outside)
    settings, registry = studio.settings, studio.registry
    uri = register(registry, f"broken-{_slug(damage.name)}", folder)
    _check_inspection(
        damage, lambda: inspect_model(uri, settings, registry), settings, studio.outside
    )
    roots = (studio.models,)
    _check_inspection(
        damage,
        lambda: inspect_model(str(folder), settings, registry, allowed_local_roots=roots),
        settings,
        studio.outside,
    )
    # Predict, deploy and batch all start by downloading the version: a link out of the
    # folder must not bring what it points at into the studio's cache.
    downloaded = _tried(lambda: local_model_path(uri, settings, registry))
    leaked = files_containing(settings.home, SENTINEL_TEXT)
    assert not leaked, f"{damage.name}: the download copied the outside file to {leaked}"
    if isinstance(downloaded, DeployStudioError):
        assert "outside" in str(downloaded) or any(n in str(downloaded) for n in damage.names), (
            f"{damage.name}: the download failed without saying why: {downloaded}"
        )


def test_the_good_model_passes(studio: Studio):
    """The corpus starts from a model that works: else every case would "fail" for nothing."""
    inspection = inspect_model(str(studio.good), studio.settings, studio.registry)
    assert inspection.input_example is not None
    assert not [c for c in inspection.report if c.status is CheckStatus.FAIL]


# ----------------------------------------------------------------------------- prediction


@pytest.fixture(scope="module")
def worker(studio: Studio):
    worker = PredictionWorker(
        studio.base / "logs" / "worker.log",
        memory_limit_mb=WORKER_MEMORY_MB,
        timeout_seconds=CALL_TIMEOUT_SECONDS,
    )
    yield worker
    worker.stop()


@pytest.fixture(scope="module")
def good_pyfunc(studio: Studio, worker):
    folder = save_pyfunc_model(studio.base / "good-pyfunc", studio.base / "pyfunc-code")
    uri = register(studio.registry, "good-pyfunc", folder)
    path = local_model_path(uri, studio.settings, studio.registry)
    prediction = worker.predict(path, ModelInput(good_frame()))
    assert prediction.output["y"].tolist() == [1.0] * 4
    return folder, path


# Each behaviour that kills the worker costs a restart (seconds of importing MLflow): the default
# run has one of each kind (a hang, a crash, the memory limit), the long run all of them.
_SLOW_BEHAVIOURS = {"predict raises SystemExit", "predict kills itself"}


@pytest.mark.parametrize(
    "behaviour",
    [b for b in PYFUNC_BEHAVIOURS if LONG or b.name not in _SLOW_BEHAVIOURS],
    ids=lambda b: _slug(b.name),
)
def test_a_misbehaving_model_gives_a_message_and_the_worker_recovers(
    studio: Studio, worker, good_pyfunc, behaviour: Behaviour
):
    good_folder, good_path = good_pyfunc
    target = studio.base / "pyfuncs" / _slug(behaviour.name)
    folder = with_code(good_folder, target, behaviour.code)
    uri = register(studio.registry, f"pyfunc-{_slug(behaviour.name)}", folder)
    path = local_model_path(uri, studio.settings, studio.registry)

    timeout = HANG_TIMEOUT_SECONDS if behaviour.hangs else CALL_TIMEOUT_SECONDS
    result = _tried(lambda: worker.predict(path, ModelInput(good_frame()), timeout))
    assert isinstance(result, DeployStudioError), f"{behaviour.name}: predicted {result!r}"
    # Loading fails as an InvalidModelError, predicting as a PredictionError, the worker's
    # death (hang, crash, memory) as a PredictionWorkerError.
    assert isinstance(result, InvalidModelError | PredictionError | PredictionWorkerError)
    message = str(result)
    if not all(name in message for name in behaviour.names):
        _unhelpful(f"{behaviour.name}: the message lacks one of {behaviour.names}:\n{message}")
    # The next call on a good model works: the worker survived or was restarted.
    after = _tried(lambda: worker.predict(good_path, ModelInput(good_frame())))
    assert not isinstance(after, DeployStudioError), f"after {behaviour.name}: {after}"
    assert after.output["y"].tolist() == [1.0] * 4


# ----------------------------------------------------------------------------- scoring scripts

# The server takes seconds to start: the default run serves two scripts (one stopping at
# start, one at score) and checks the syntax of all; the long run serves every script.
_QUICK_SCRIPTS = {"no run()", "run raises"}


@pytest.mark.parametrize(
    "script",
    [s for s in SCRIPTS if LONG or s.name in _QUICK_SCRIPTS or s.stage == "syntax"],
    ids=lambda s: _slug(s.name),
)
def test_a_broken_scoring_script_is_reported_by_line_or_function(studio: Studio, script: Script):
    request = example_request(studio.good)
    result = _tried(
        lambda: validate_scoring_script(
            script.source,
            studio.good,
            request,
            studio.base / "validate",
            timeout_seconds=SCRIPT_TIMEOUT_SECONDS,
        )
    )
    if isinstance(result, DeployStudioError):
        message, stage = str(result), script.stage
    else:
        assert not result.ok, f"{script.name}: validated as working: {result.message}"
        message, stage = result.message, result.stage
    assert stage == script.stage, f"{script.name}: stopped at {stage}: {message}"
    if not any(name in message for name in script.names):
        _unhelpful(f"{script.name}: the message names none of {script.names}:\n{message}")
