"""A real run in a real SQLite registry, a model folder outside its artifacts, and the
`runs:/` URIs that try to climb from one to the other (issue 21, finding 1).

Shared by the unit tests (tests/test_model_location.py), the page tests and the fuzz suite
(tests/reliability/test_uri_fuzz.py).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml
from mlflow.utils.file_utils import local_file_uri_to_path

from deploystudio.config import Settings
from deploystudio.inspection import ModelInspection, inspect_model
from deploystudio.prediction import local_model_path
from deploystudio.registry import Registry
from tests.conftest import settings_for
from tests.reliability.model_corpus import SENTINEL_TEXT, files_containing, sentinel_folder

EXPERIMENT = "uri-traversal"
INSIDE_LOADER = "inside_model_of_the_run"


@dataclass(frozen=True)
class RunWithModel:
    run_id: str
    # The run's `model` artifact folder on disk.
    model_folder: Path
    # A folder with a valid MLmodel (holding SENTINEL_TEXT), outside every allowed place.
    outside: Path
    # From the run's `model` artifact to `outside`: ../../../outside
    climb: str


def log_run_with_model(registry: Registry, settings: Settings, base: Path) -> RunWithModel:
    """A run with a `model` artifact (an MLmodel only) in `registry`, and the outside folder."""
    client = registry.client
    found = client.get_experiment_by_name(EXPERIMENT)
    # Artifacts in the data folder: without a location MLflow writes ./mlruns in the repository.
    location = (settings.artifact_root / EXPERIMENT).as_uri()
    experiment_id = found.experiment_id if found else client.create_experiment(EXPERIMENT, location)
    run = client.create_run(experiment_id)
    source = base / "logged" / "model"
    source.mkdir(parents=True)
    (source / "MLmodel").write_text(
        yaml.safe_dump({"flavors": {"python_function": {"loader_module": INSIDE_LOADER}}})
    )
    client.log_artifacts(run.info.run_id, str(source.parent))
    client.set_terminated(run.info.run_id)
    model_folder = Path(local_file_uri_to_path(run.info.artifact_uri)) / "model"
    outside = sentinel_folder(base)
    climb = os.path.relpath(outside, model_folder)
    assert climb.startswith("../") and (model_folder / climb / "MLmodel").is_file()
    return RunWithModel(run.info.run_id, model_folder, outside, climb)


def traversal_uris(setup: RunWithModel) -> dict[str, str]:
    """The finding's URIs, by the trick each uses; every one must be refused."""
    run, climb = setup.run_id, setup.climb
    return {
        "dot-dot": f"runs:/{run}/model/{climb}",
        "percent dots": f"runs:/{run}/model/{climb.replace('..', '%2e%2e')}",
        "percent slashes": f"runs:/{run}/model/{climb.replace('/', '%2f')}",
        "double percent": f"runs:/{run}/model/{climb.replace('..', '%252e%252e')}",
        "backslashes": f"runs:/{run}/model\\{climb.replace('/', chr(92))}",
        "fullwidth dots": f"runs:/{run}/model/{climb.replace('..', chr(0xFF0E) * 2)}",
        "NUL byte": f"runs:/{run}/model/{climb}\x00",
        "NUL in name": f"runs:/{run}/mo\x00del",
        "absolute": f"runs:/{run}/{setup.outside}",
        "logged-model climb": f"runs:/{run}/no-such-model/{climb}",
    }


def outside_reads(*roots: Path) -> list[Path]:
    """Copies of the outside folder's files under `roots` (the caches): proof it was read."""
    existing = [root for root in roots if root.exists()]
    return [found for root in existing for found in files_containing(root, SENTINEL_TEXT)]


class TraversalStudio:
    """Its own data folder and registry (odd versions stay out of other tests' listings), the
    run, and an allowed model root for local folders."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.settings: Settings = settings_for(base / "home")
        self.registry = Registry(self.settings.tracking_uri, self.settings.registry_uri)
        self.run = log_run_with_model(self.registry, self.settings, base)
        self.roots = (base / "roots",)
        # Inside the allowed root: a model folder, and a link that leads out of the root.
        (self.roots[0] / "model").mkdir(parents=True)
        shutil.copy(self.run.model_folder / "MLmodel", self.roots[0] / "model" / "MLmodel")
        (self.roots[0] / "link-out").symlink_to(self.run.outside)

    def uri(self, trick: str) -> str:
        return traversal_uris(self.run)[trick]

    def register(self, name: str, source: str, run_id: str | None = None) -> str:
        client = self.registry.client
        client.create_registered_model(name)
        return f"models:/{name}/{client.create_model_version(name, source, run_id=run_id).version}"


def inspect(studio: TraversalStudio, uri: str) -> ModelInspection:
    return inspect_model(uri, studio.settings, studio.registry, allowed_local_roots=studio.roots)


def predict_path(studio: TraversalStudio, uri: str) -> Path:
    return local_model_path(uri, studio.settings, studio.registry, allowed_local_roots=studio.roots)
