"""Uploads through the real azure-ai-ml: a local registry model registered in the workspace as an
mlflow_model asset, and a scoring bundle's code and environment. The fake ARM transport also
serves the default datastore, its SAS secret, asset versions and the blob service
(tests/azure_fake.py); the SDK's upload code runs for real.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from deploystudio.config import Settings
from deploystudio.customization.bundles import bundle_store
from deploystudio.customization.script_environment import generate_environment
from deploystudio.deployment.azure.online import AzureTarget
from deploystudio.deployment.azure.workspace import AzureWorkspace
from deploystudio.deployment.base import DeploymentState
from deploystudio.deployment.store import DeploymentStore
from deploystudio.prediction import local_model_path
from deploystudio.registry import Registry
from tests.azure_fake import FakeAzureML, StaticToken
from tests.conftest import AZURE_DIABETES_MODEL

IRIS = "models:/iris-classifier/1"
SCRIPT = "import json\n\n\ndef init():\n    pass\n\n\ndef run(raw):\n    return json.loads(raw)\n"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeAzureML:
    fake = FakeAzureML()
    fake.serve_storage(monkeypatch)
    return fake


@pytest.fixture
def target(
    fake: FakeAzureML, settings: Settings, registry: Registry, tmp_path: Path
) -> AzureTarget:
    workspace = AzureWorkspace(fake.subscription_id, fake.resource_group, fake.workspace_name)
    store = DeploymentStore(tmp_path / "deployments.db", actor="tester")
    target = AzureTarget(
        settings, workspace, StaticToken(), transport=fake, store=store, registry=registry
    )
    target.create_endpoint("upload-ep")
    return target


def _uploaded(fake: FakeAzureML, container: str) -> dict[str, bytes]:
    """The blobs of one container, by name."""
    return {
        name.split("/", 1)[1]: blob.data
        for name, blob in fake.blobs.items()
        if name.split("/", 1)[0] == container
    }


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def _assert_no_secret(fake: FakeAzureML, target: AzureTarget, *texts: str) -> None:
    signature = fake.sas_token.split("sig=", 1)[1]
    for text in texts:
        assert signature not in text and fake.sas_token not in text
    # Nor anywhere in the deployment store's file (records, audit history).
    for path in Path(target.store.path).parent.glob(Path(target.store.path).name + "*"):
        assert signature.encode() not in path.read_bytes()


def test_a_local_registry_model_is_uploaded_and_registered_as_mlflow_model(
    seeded: list[str],
    target: AzureTarget,
    fake: FakeAzureML,
    settings: Settings,
    registry: Registry,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    progress: list[str] = []
    with caplog.at_level(logging.DEBUG):
        deployment = target.create_deployment(
            "blue", IRIS, "upload-ep", {"instance_count": 1}, progress=progress.append
        )
    assert deployment.state is DeploymentState.READY
    assert deployment.model_uri == IRIS

    # Every file of the model folder, byte for byte, under one uploaded prefix.
    model_folder = local_model_path(IRIS, settings, registry)
    uploaded = _uploaded(fake, fake.container)
    prefix = next(iter(uploaded)).split("/" + model_folder.name + "/")[0] + "/" + model_folder.name
    assert prefix.startswith("LocalUpload/")
    assert {name.removeprefix(prefix + "/"): data for name, data in uploaded.items()} == _files(
        model_folder
    )
    # The uploads used the datastore's SAS token (masked in the fake's record).
    puts = [r for r in fake.of_route("blob", "PUT") if "comp" not in r.query]
    assert puts and all(r.query.get("sig") == ["***"] for r in puts)

    # Then the model version, typed mlflow_model, pointing at the uploaded folder.
    (model_put,) = [r for r in fake.of_route("asset_version", "PUT") if "/models/" in r.path]
    assert model_put.path.endswith("/models/iris-classifier/versions/1")
    assert model_put.body["properties"]["modelType"] == "mlflow_model"
    assert model_put.body["properties"]["modelUri"].endswith(
        f"/datastores/workspaceblobstore/paths/{prefix}"
    )
    deployment_put = fake.of_route("deployment", "PUT")[-1].body["properties"]
    assert deployment_put["model"].endswith("/models/iris-classifier/versions/1")
    assert "codeConfiguration" not in deployment_put

    out, err = capfd.readouterr()
    # The SDK's upload progress bar went to the DEBUG log, not to the console.
    assert out == "" and "Uploading" not in err, err
    assert any("Uploading" in r.getMessage() for r in caplog.records)
    _assert_no_secret(fake, target, out, err, *progress, *(r.getMessage() for r in caplog.records))


def test_a_scoring_bundle_uploads_its_script_and_builds_its_environment(
    target: AzureTarget,
    fake: FakeAzureML,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    environment = generate_environment(AZURE_DIABETES_MODEL)
    bundle = bundle_store(settings).save(
        "azure-upload-score", SCRIPT, environment, model_uri=IRIS, template="no-code"
    )
    progress: list[str] = []
    with caplog.at_level(logging.DEBUG):
        deployment = target.create_deployment(
            "green",
            "azureml:iris-classifier:1",
            "upload-ep",
            {"bundle": bundle.label},
            progress=progress.append,
        )
    assert deployment.state is DeploymentState.READY
    assert deployment.bundle == bundle.label

    # score.py uploaded as it is in the bundle.
    (container,) = fake.containers  # the temporary container of the code snapshot
    uploaded = _uploaded(fake, container)
    scripts = {n: d for n, d in uploaded.items() if n.endswith("score.py")}
    assert list(scripts.values()) == [SCRIPT.encode()]
    assert {n.rsplit("/", 1)[-1] for n in uploaded} >= {"score.py", "conda.yaml"}
    (code_put,) = [r for r in fake.of_route("asset_version", "PUT") if "/codes/" in r.path]
    script_folder = next(iter(scripts)).rsplit("/", 1)[0]
    assert code_put.body["properties"]["codeUri"].endswith(f"/{container}/{script_folder}")

    # The environment: the bundle's conda file and base image.
    (env_put,) = [r for r in fake.of_route("asset_version", "PUT") if "/environments/" in r.path]
    env = env_put.body["properties"]
    assert yaml.safe_load(env["condaFile"]) == yaml.safe_load(environment.conda_yaml)
    assert env["image"] == environment.base_image

    body = fake.of_route("deployment", "PUT")[-1].body["properties"]
    assert body["codeConfiguration"]["scoringScript"] == "score.py"
    assert body["codeConfiguration"]["codeId"].startswith(code_put.path.split("/versions/")[0])
    assert body["environmentId"].endswith(env_put.path.split("/environments/", 1)[1])
    assert body["model"].endswith("/models/iris-classifier/versions/1")

    out, err = capfd.readouterr()
    _assert_no_secret(fake, target, out, err, *progress, *(r.getMessage() for r in caplog.records))
