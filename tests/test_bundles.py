"""Scoring bundles: versions on disk, names, atomic saves, attaching to the real registry, and the
Azure zip loaded back with azure-ai-ml's own loader."""

from __future__ import annotations

import io
import json
import multiprocessing
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from azure.ai.ml import load_online_deployment
from azure.ai.ml._utils._asset_utils import get_ignore_file, get_upload_files_from_folder

from deploystudio.customization.bundles import (
    SCORING_BUNDLE_TAG,
    Bundle,
    BundleStore,
    attach_bundle,
    bundle_store,
    bundle_zip,
)
from deploystudio.customization.script_environment import (
    DEFAULT_BASE_IMAGE,
    EnvironmentSpec,
    generate_environment,
)
from deploystudio.deployment.actors import local_user
from deploystudio.errors import BundleError, DeployStudioError, ModelNotFoundError
from deploystudio.model_uri import parse_model_uri
from deploystudio.registry import Registry
from tests.conftest import AZURE_DIABETES_MODEL, AZURE_FIXTURES

SCRIPT = "def init():\n    pass\n\n\ndef run(raw_data):\n    return raw_data\n"
IRIS_URI = "models:/iris-classifier/1"
ATTACH_MODEL = "test-bundle-attach"
FIXTURE_DEPLOYMENT = AZURE_FIXTURES / "yaml" / "online-deployment-mlflow-with-script.yaml"


@pytest.fixture(scope="module")
def environment() -> EnvironmentSpec:
    return generate_environment(AZURE_DIABETES_MODEL)


@pytest.fixture
def store(tmp_path: Path) -> BundleStore:
    return BundleStore(tmp_path / "bundles")


def _save(store: BundleStore, environment: EnvironmentSpec, name: str = "iris-score", **kw):
    kw.setdefault("model_uri", IRIS_URI)
    kw.setdefault("template", "no-code")
    return store.save(name, kw.pop("script", SCRIPT), environment, **kw)


def test_saves_numbered_versions_with_their_files(store, environment):
    first = _save(store, environment, note="first try", validated=True, validation_summary="200")
    second = _save(store, environment, script=SCRIPT + "# v2\n")
    assert (first.version, second.version) == (1, 2)
    assert first.path == store.root / "iris-score" / "1"
    assert sorted(p.name for p in first.path.iterdir()) == ["bundle.json", "conda.yaml", "score.py"]
    assert first.script() == SCRIPT and second.script().endswith("# v2\n")
    assert first.conda_yaml() == environment.conda_yaml
    metadata = json.loads((first.path / "bundle.json").read_text())
    assert metadata["name"] == "iris-score" and metadata["version"] == 1
    assert metadata["model_uri"] == IRIS_URI and metadata["template"] == "no-code"
    assert metadata["base_image"] == DEFAULT_BASE_IMAGE
    assert metadata["note"] == "first try" and metadata["validated"] is True
    assert metadata["validation_summary"] == "200"
    created = datetime.fromisoformat(metadata["created_at"])
    assert created.utcoffset().total_seconds() == 0
    assert abs((datetime.now(UTC) - created).total_seconds()) < 60
    assert store.get("iris-score") == second
    assert store.get("iris-score", 1) == first
    assert [b.version for b in store.versions("iris-score")] == [2, 1]


def test_list_bundles_by_name_newest_first(store, environment):
    for name in ("zeta-score", "alpha-score", "zeta-score"):
        _save(store, environment, name=name)
    assert [(b.name, b.version) for b in store.list_bundles()] == [
        ("alpha-score", 1),
        ("zeta-score", 2),
        ("zeta-score", 1),
    ]
    assert BundleStore(store.root / "nothing-here").list_bundles() == []


def test_bundle_store_lives_in_the_data_folder(settings):
    assert bundle_store(settings).root == settings.home / "bundles"


@pytest.mark.parametrize(
    "name",
    [
        "ab",  # too short
        "a" * 33,  # too long
        "1score",  # starts with a digit
        "-score",  # starts with a dash
        "my--score",  # double dash
        "score-",  # ends with a dash
        "my_score",  # underscore
        "my.score",
        "my score",
        "../escape",
        "a/b/c",
        "",
    ],
)
def test_names_outside_azures_rule_are_refused(store, environment, name):
    with pytest.raises(BundleError, match="3-32 characters: letters, digits and single dashes"):
        _save(store, environment, name=name)
    assert not store.root.exists() or list(store.root.rglob("*")) == []
    with pytest.raises(BundleError):
        store.get(name)


def test_names_at_the_limits_are_accepted(store, environment):
    assert _save(store, environment, name="abc").version == 1
    assert _save(store, environment, name="A" + "b-1" * 10 + "z").version == 1  # 32 characters


def test_get_of_a_missing_bundle_names_what_exists(store, environment):
    with pytest.raises(BundleError, match="no bundles are saved yet"):
        store.get("iris-score")
    _save(store, environment)
    _save(store, environment)
    _save(store, environment, name="other-score")
    with pytest.raises(BundleError, match=r"no bundle named 'wine-score'.*iris-score, other-score"):
        store.get("wine-score")
    with pytest.raises(BundleError, match="has no version 7; it has 2, 1"):
        store.get("iris-score", 7)
    for bad_version in (0, -1, True, "1"):
        with pytest.raises(BundleError, match="whole number"):
            store.get("iris-score", bad_version)


def test_a_failure_mid_save_leaves_nothing(store, environment):
    _save(store, environment)
    # A lone surrogate cannot be written as UTF-8: score.py fails after conda.yaml was written.
    with pytest.raises(BundleError, match="Nothing was saved"):
        _save(store, environment, script="print('\ud800')\n")
    folder = store.root / "iris-score"
    assert sorted(p.name for p in folder.iterdir()) == ["1"]
    assert _save(store, environment).version == 2


def test_an_environment_with_problems_is_not_saved(store, environment):
    broken = EnvironmentSpec(environment.conda_yaml, base_image="Not An Image")
    with pytest.raises(BundleError, match="is not an image name"):
        _save(store, broken)
    assert not (store.root / "iris-score").exists()
    with pytest.raises(BundleError, match="model"):
        _save(store, environment, model_uri="models:/iris-classifier/latest")


def _save_after(barrier, root: Path, environment: EnvironmentSpec, writer: int) -> None:
    barrier.wait()
    _save(BundleStore(root), environment, script=f"# writer {writer}\n")


def test_concurrent_saves_get_distinct_versions(store, environment):
    # Processes, not threads: under the GIL threads barely overlap, and processes do make
    # saves collide on a number (and retry with the next one).
    workers = 8
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(workers)
    processes = [
        context.Process(target=_save_after, args=(barrier, store.root, environment, i))
        for i in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    assert [p.exitcode for p in processes] == [0] * workers
    saved = store.versions("iris-score")
    assert sorted(b.version for b in saved) == list(range(1, workers + 1))
    # Each version holds exactly one writer's script: no save overwrote another.
    assert sorted(b.script() for b in saved) == sorted(f"# writer {i}\n" for i in range(workers))
    assert not [p for p in (store.root / "iris-score").iterdir() if p.name.startswith(".")]


def test_delete_never_reuses_the_number(store, environment):
    for _ in range(2):
        _save(store, environment)
    store.delete("iris-score", 2)
    assert [b.version for b in store.versions("iris-score")] == [1]
    with pytest.raises(BundleError, match="has no version 2; it has 1"):
        store.get("iris-score", 2)
    assert _save(store, environment).version == 3
    with pytest.raises(BundleError):
        store.delete("iris-score", 2)


# --- attaching to a registered version (a model of its own: other tests count demo tags) ---


@pytest.fixture(scope="module")
def attach_model(registry: Registry, seeded) -> str:
    source = registry.artifact_location(parse_model_uri(IRIS_URI))
    registry.client.create_registered_model(ATTACH_MODEL)
    for _ in range(2):
        registry.client.create_model_version(ATTACH_MODEL, source)
    registry.client.set_registered_model_alias(ATTACH_MODEL, "staging", "1")
    return ATTACH_MODEL


def test_attach_sets_the_version_tag(registry, attach_model, store, environment):
    bundle = _save(store, environment, model_uri=f"models:/{attach_model}/2")
    attach_bundle(registry, bundle, f"models:/{attach_model}/2")
    assert registry.get_version(attach_model, "2").tags[SCORING_BUNDLE_TAG] == "iris-score:1"
    assert SCORING_BUNDLE_TAG not in registry.get_version(attach_model, "1").tags
    newer = _save(store, environment)
    attach_bundle(registry, newer, f"models:/{attach_model}/2")
    assert registry.get_version(attach_model, "2").tags[SCORING_BUNDLE_TAG] == "iris-score:2"


def test_attach_through_an_alias(registry, attach_model, store, environment):
    bundle = _save(store, environment, name="alias-score")
    attach_bundle(registry, bundle, f"models:/{attach_model}@staging")
    assert registry.get_version(attach_model, "1").tags[SCORING_BUNDLE_TAG] == "alias-score:1"


@pytest.mark.parametrize(
    "uri", ["models:/m-0123456789abcdef", "runs:/0123abcd/model", "/tmp/some-model", "s3://b/m"]
)
def test_attach_needs_a_registered_version(registry, store, environment, uri):
    bundle = _save(store, environment)
    with pytest.raises(BundleError, match="models:/NAME/VERSION or models:/NAME@ALIAS"):
        attach_bundle(registry, bundle, uri)


def test_attach_to_a_missing_version_or_a_deleted_bundle(
    registry, attach_model, store, environment
):
    bundle = _save(store, environment)
    with pytest.raises(ModelNotFoundError, match=f"Version 99 of model '{attach_model}'"):
        attach_bundle(registry, bundle, f"models:/{attach_model}/99")
    with pytest.raises(ModelNotFoundError):
        attach_bundle(registry, bundle, f"models:/{attach_model}@nowhere")
    store.delete(bundle.name, bundle.version)
    with pytest.raises(BundleError, match="no longer exists"):
        attach_bundle(registry, bundle, f"models:/{attach_model}/1")


# --- the Azure zip ---


def _unzip(data: bytes, target: Path) -> Path:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(target)
    return target


def test_zip_of_a_registered_version_loads_in_azure_ai_ml(store, environment, tmp_path):
    bundle = _save(store, environment)
    data = bundle_zip(bundle, endpoint_name="iris-endpoint", deployment_name="green")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert sorted(archive.namelist()) == sorted(
            ["score.py", "conda.yaml", "deployment.yml", "README.md", ".amlignore"]
        )
    folder = _unzip(data, tmp_path / "unzipped")
    assert (folder / "score.py").read_text() == SCRIPT
    assert (folder / "conda.yaml").read_text() == environment.conda_yaml
    spec = yaml.safe_load((folder / "deployment.yml").read_text())
    assert spec["model"] == "azureml:iris-classifier:1"
    assert spec["code_configuration"] == {"code": ".", "scoring_script": "score.py"}
    assert spec["environment"] == {"conda_file": "conda.yaml", "image": DEFAULT_BASE_IMAGE}

    deployment = load_online_deployment(str(folder / "deployment.yml"))
    assert deployment.name == "green" and deployment.endpoint_name == "iris-endpoint"
    assert deployment.model == "iris-classifier:1"  # the loader drops the azureml: prefix
    assert deployment.code_configuration.scoring_script == "score.py"
    assert deployment.environment.image == DEFAULT_BASE_IMAGE
    # The loader read conda.yaml through the relative reference.
    assert deployment.environment.conda_file == yaml.safe_load(environment.conda_yaml)
    assert deployment.instance_type == "Standard_DS3_v2" and deployment.instance_count == 1

    readme = (folder / "README.md").read_text()
    assert "az ml online-deployment create -f deployment.yml" in readme
    assert "az ml model create --name iris-classifier --version 1" in readme


def test_zip_has_the_fields_of_azures_own_example(store, environment, tmp_path):
    folder = _unzip(bundle_zip(_save(store, environment)), tmp_path / "unzipped")
    ours = yaml.safe_load((folder / "deployment.yml").read_text())
    example = yaml.safe_load(FIXTURE_DEPLOYMENT.read_text())
    assert set(example) <= set(ours)
    assert ours["$schema"] == example["$schema"]
    assert set(ours["environment"]) == set(example["environment"])
    assert set(ours["code_configuration"]) == set(example["code_configuration"])


def test_zip_of_an_alias_takes_the_model_from_a_local_folder(
    store, environment, tmp_path, azure_diabetes_model
):
    bundle = _save(store, environment, model_uri="models:/iris-classifier@champion")
    data = bundle_zip(bundle)
    folder = _unzip(data, tmp_path / "unzipped")
    assert (folder / "model").is_dir() and not any((folder / "model").iterdir())
    assert "copy the MLflow model folder" in (folder / "README.md").read_text()
    spec = yaml.safe_load((folder / "deployment.yml").read_text())
    assert spec["model"] == {"path": "model/", "type": "mlflow_model"}
    # Filled in as the README says, the folder deploys: the model is read from model/ and
    # Azure's code upload (its own ignore-file logic) carries only the script.
    for source in azure_diabetes_model.iterdir():
        (folder / "model" / source.name).write_bytes(source.read_bytes())
    deployment = load_online_deployment(str(folder / "deployment.yml"))
    assert Path(deployment.model.path) == folder / "model"
    assert deployment.model.type == "mlflow_model"
    uploaded = get_upload_files_from_folder(
        str(folder), prefix="", ignore_file=get_ignore_file(folder)
    )
    assert sorted(name for _, name in uploaded) == [".amlignore", "score.py"]


def test_zip_of_the_azure_example_model_carries_its_requirements(
    store, environment, tmp_path, azure_diabetes_model
):
    bundle = _save(store, environment, model_uri=str(azure_diabetes_model))
    folder = _unzip(bundle_zip(bundle), tmp_path / "unzipped")
    deployment = load_online_deployment(str(folder / "deployment.yml"))
    pip = deployment.environment.conda_file["dependencies"][-1]["pip"]
    assert "scikit-learn==1.6.1" in pip and "psutil==5.9.4" in pip
    assert any(line.startswith("azureml-inference-server-http==") for line in pip)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"endpoint_name": "my_endpoint"}, "Endpoint name 'my_endpoint'"),
        ({"deployment_name": "b"}, "Deployment name 'b'"),
        ({"instance_type": "Standard DS3"}, "not an Azure VM size"),
    ],
)
def test_zip_options_are_checked(store, environment, options, expected):
    bundle = _save(store, environment)
    with pytest.raises(BundleError, match=expected):
        bundle_zip(bundle, **options)


def test_zip_of_a_deleted_bundle(store, environment):
    bundle: Bundle = _save(store, environment)
    store.delete(bundle.name, bundle.version)
    with pytest.raises(DeployStudioError, match="was it deleted"):
        bundle_zip(bundle)


def test_a_bundle_records_who_saved_it(store, environment):
    assert _save(store, environment).saved_by == local_user()  # the CLI's signature
    signed = _save(store, environment, saved_by="ana@example.com")
    assert store.get("iris-score", signed.version).saved_by == "ana@example.com"
    readme = zipfile.ZipFile(io.BytesIO(bundle_zip(signed))).read("README.md").decode()
    assert "Saved by: ana@example.com." in readme
