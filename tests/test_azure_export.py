"""Export round trip: our specs -> folder -> azure-ai-ml loaders -> same fields, and the same
keys as Azure's own example YAML."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from azure.ai.ml import load_online_deployment
from mlflow.models import Model

from deploystudio.cli.main import main
from deploystudio.deployment.azure.export import example_request_or_none, export_online
from deploystudio.deployment.azure.model_reference import workspace_reference
from deploystudio.deployment.azure.model_registration import register_model
from deploystudio.deployment.azure.specs import (
    ModelSource,
    OnlineDeploymentSpec,
    OnlineEndpointSpec,
    ScoringCode,
    endpoint_entity,
    model_source,
    validate_traffic,
)
from deploystudio.deployment.azure.workspace import AzureWorkspace, ml_client
from deploystudio.errors import (
    AzureExportError,
    AzureSpecError,
    DeployStudioError,
    TrafficError,
    UnsafePathError,
)
from deploystudio.payloads import PayloadFormat, example_request, parse_payload
from deploystudio.prediction import local_model_path
from tests.azure_fake import FakeAzureML, StaticToken
from tests.conftest import AZURE_FIXTURES

YAML = AZURE_FIXTURES / "yaml"
IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"
IRIS = "models:/iris-classifier/1"


def model_signature(path: Path):
    return Model.load(str(path)).signature


def _local(model_path: Path, **changes) -> OnlineDeploymentSpec:
    values = dict(
        name="blue",
        endpoint_name="my-endpoint",
        model=ModelSource(local_path=model_path, name="sklearn-diabetes", version="1"),
        instance_type="Standard_F2s_v2",
        instance_count=1,
    )
    values.update(changes)
    return OnlineDeploymentSpec(**values)


def _keys(path: Path) -> set[str]:
    return set(yaml.safe_load(path.read_text()))


def test_no_code_export_loads_back_with_the_same_fields(
    tmp_path: Path, azure_diabetes_model: Path
) -> None:
    spec = _local(
        azure_diabetes_model,
        instance_count=2,
        request_settings={"request_timeout_ms": 9000},
        readiness_probe={"period": 7},
    )
    result = export_online(tmp_path / "out", OnlineEndpointSpec("my-endpoint", "aad_token"), spec)
    out = result.folder
    assert {"endpoint.yml", "deployment.yml", "README.md", "model/MLmodel"} <= set(result.files)
    assert not (out / "conda.yaml").exists() and not (out / "code").exists()
    endpoint, deployment = result.endpoint, result.deployment
    assert (endpoint.name, endpoint.auth_mode) == ("my-endpoint", "aad_token")
    assert (deployment.name, deployment.endpoint_name) == ("blue", "my-endpoint")
    assert (deployment.instance_type, deployment.instance_count) == ("Standard_F2s_v2", 2)
    assert deployment.model.type == "mlflow_model"
    assert Path(deployment.model.path) == out / "model"
    assert deployment.request_settings.request_timeout_ms == 9000
    assert deployment.readiness_probe.period == 7
    # Same keys as Azure's examples (ours may add settings the user chose).
    assert _keys(YAML / "online-endpoint.yml") <= _keys(out / "endpoint.yml")
    assert _keys(YAML / "online-deployment-mlflow-registered.yml") <= _keys(out / "deployment.yml")
    ours = yaml.safe_load((out / "deployment.yml").read_text())
    example = yaml.safe_load((YAML / "online-deployment-mlflow-with-script.yaml").read_text())
    # Azure's example pins `version: 1`; ours leaves the number to the workspace (the name's
    # next version), since our version 1 may be taken there by another model version.
    assert set(ours["model"]) == set(example["model"]) - {"version"}
    assert deployment.model.name == "sklearn-diabetes" and deployment.model.version is None
    assert ours["model"]["path"] == "model"  # relative to the folder
    # This model has no input example: no request.json, and no command that needs one.
    assert "request.json" not in result.files and "--request-file" not in readme_of(result)
    assert_readme_names_only_exported_files(result)


def test_bundle_export_has_script_environment_and_same_keys(
    tmp_path: Path, azure_diabetes_model: Path
) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "score.py").write_text("def init():\n    pass\n\n\ndef run(raw):\n    return raw\n")
    conda = "name: env\ndependencies:\n  - python=3.11\n  - pip:\n    - mlflow\n"
    (bundle / "conda.yaml").write_text(conda)
    code = ScoringCode(bundle, "score.py", bundle / "conda.yaml", IMAGE)
    result = export_online(
        tmp_path / "out", OnlineEndpointSpec("my-endpoint"), _local(azure_diabetes_model, code=code)
    )
    out = result.folder
    assert (out / "code" / "score.py").read_text() == (bundle / "score.py").read_text()
    assert (out / "conda.yaml").read_text() == conda
    deployment = result.deployment
    assert deployment.code_configuration.scoring_script == "score.py"
    # Kept relative: azure-ai-ml resolves it against the YAML's folder when it uploads.
    assert (out / deployment.code_configuration.code / "score.py").is_file()
    assert deployment.environment.image == IMAGE
    assert deployment.environment.conda_file == yaml.safe_load(conda)
    ours = yaml.safe_load((out / "deployment.yml").read_text())
    example = yaml.safe_load((YAML / "online-deployment-with-script.yml").read_text())
    assert set(example) <= set(ours)
    assert set(ours["environment"]) == set(example["environment"])
    assert set(ours["code_configuration"]) == set(example["code_configuration"])
    assert ours["environment"]["conda_file"] == "conda.yaml"


def readme_of(result) -> str:
    return (result.folder / "README.md").read_text()


# What the README tells the reader to run: `az ml` lines and the Python block's calls.
_FILE_ARGUMENT = re.compile(
    r"(?:-f|--request-file)\s+(\S+)|(?:load_online_\w+\(|request_file=)\"([^\"]+)\""
)


def readme_files(readme: str) -> set[str]:
    """Every file a command or call in the README names."""
    commands = [
        line.strip()
        for line in readme.splitlines()
        if line.strip().startswith("az ml") or "load_online_" in line or "request_file=" in line
    ]
    assert commands, readme
    return {a or b for line in commands for a, b in _FILE_ARGUMENT.findall(line)}


def assert_readme_names_only_exported_files(result) -> None:
    named = readme_files(readme_of(result))
    assert {"endpoint.yml", "deployment.yml"} <= named
    missing = named - set(result.files)
    assert not missing, f"the README names files the export did not write: {missing}"
    for command in result.commands:
        assert command in readme_of(result)


def test_iris_export_writes_its_input_example_as_request_json(
    tmp_path: Path, settings, registry, seeded
) -> None:
    iris = local_model_path(IRIS, settings, registry)
    request = example_request_or_none(iris)
    assert request is not None
    spec = _local(iris, model=ModelSource(local_path=iris, name="iris-classifier", version="1"))
    result = export_online(
        tmp_path / "out", OnlineEndpointSpec("my-endpoint"), spec, request=request
    )
    assert "request.json" in result.files
    written = json.loads((result.folder / "request.json").read_text())
    # The version's input example, in Azure's input_data shape, parsed as Azure's format.
    assert written == example_request(iris) and set(written) >= {"input_data"}
    parsed = parse_payload(
        json.dumps(written), model_signature(iris), PayloadFormat.AZURE_INPUT_DATA
    )
    assert list(parsed.data.columns) == list(written["input_data"]["columns"])
    assert len(parsed.data) == len(written["input_data"]["data"]) > 0
    readme = readme_of(result)
    assert (
        "az ml online-endpoint invoke --name my-endpoint --deployment-name blue "
        "--request-file request.json" in readme
    )
    assert_readme_names_only_exported_files(result)
    # And the YAML loads with azure-ai-ml's loaders from the folder itself.
    loaded = load_online_deployment(str(result.folder / "deployment.yml"))
    assert loaded.model.type == "mlflow_model" and loaded.model.version is None


def test_a_version_registered_through_azure_ai_ml_is_the_one_exported(
    tmp_path: Path, settings, registry, seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeAzureML()
    fake.serve_storage(monkeypatch)
    client = ml_client(
        AzureWorkspace(fake.subscription_id, fake.resource_group, fake.workspace_name),
        StaticToken(),
        fake,
    )
    iris = local_model_path(IRIS, settings, registry)
    # The workspace already has a version of that name (another machine's upload, say): Azure
    # gives the next number, which is not our version 1.
    first = register_model(client, iris, "iris-classifier", IRIS)
    progress: list[str] = []
    second = register_model(client, iris, "iris-classifier", IRIS, progress=progress.append)
    assert (first.version, second.version) == ("1", "2")
    assert second.reference == "azureml:iris-classifier:2"
    assert progress[-1] == "Registered as azureml:iris-classifier:2"
    (put, _) = [r for r in fake.of_route("asset_version", "PUT") if "/models/" in r.path][::-1]
    assert put.path.endswith("/models/iris-classifier/versions/2")
    properties = put.body["properties"]
    assert properties["modelType"] == "mlflow_model"
    assert properties["tags"] == {"deploystudio.source": IRIS}
    assert "/datastores/workspaceblobstore/paths/LocalUpload/" in properties["modelUri"]
    assert fake.blobs, "the model's files were uploaded"

    spec = _local(iris, model=model_source(IRIS, settings, workspace_version=second.version))
    result = export_online(
        tmp_path / "out",
        OnlineEndpointSpec("my-endpoint"),
        spec,
        request=example_request_or_none(iris),
    )
    assert yaml.safe_load((result.folder / "deployment.yml").read_text())["model"] == (
        "azureml:iris-classifier:2"
    )
    assert result.deployment.model == "iris-classifier:2"
    assert not any(name.startswith("model/") for name in result.files)
    assert "`azureml:iris-classifier:2`" in readme_of(result)
    assert_readme_names_only_exported_files(result)


def test_a_registration_azure_refuses_says_why(
    settings, registry, seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeAzureML()
    fake.serve_storage(monkeypatch)
    fake.fail("asset_version", 403, "AuthorizationFailed", "no write access", method="PUT")
    client = ml_client(
        AzureWorkspace(fake.subscription_id, fake.resource_group, fake.workspace_name),
        StaticToken(),
        fake,
    )
    with pytest.raises(DeployStudioError, match="register model 'iris-classifier'"):
        register_model(client, local_model_path(IRIS, settings, registry), "iris-classifier", IRIS)
    with pytest.raises(AzureSpecError, match="valid Azure ML asset name"):
        register_model(client, Path("unused"), "bad name", IRIS)


def test_a_workspace_version_is_asked_never_guessed(settings) -> None:
    assert workspace_reference("iris-classifier", " 7 ") == "azureml:iris-classifier:7"
    with pytest.raises(AzureSpecError, match="Give the version of iris-classifier"):
        model_source(IRIS, settings, workspace_version="")
    with pytest.raises(AzureSpecError, match="not an Azure ML model version"):
        workspace_reference("iris-classifier", "7; rm")
    with pytest.raises(AzureSpecError, match="not a registered model"):
        model_source("/some/folder", settings, workspace_version="3")


def test_readme_has_the_commands(tmp_path: Path) -> None:
    spec = _local(Path("unused"), model=ModelSource(azure_reference="azureml:diabetes:3"))
    result = export_online(tmp_path / "out", OnlineEndpointSpec("my-endpoint"), spec)
    readme = (result.folder / "README.md").read_text()
    for command in result.commands:
        assert command in readme
    assert "az ml online-deployment create -f deployment.yml --all-traffic" in readme
    assert "ml_client.online_deployments.begin_create_or_update(deployment)" in readme
    assert yaml.safe_load((result.folder / "deployment.yml").read_text())["model"] == (
        "azureml:diabetes:3"
    )
    assert result.files == ("README.md", "deployment.yml", "endpoint.yml")
    assert_readme_names_only_exported_files(result)


def test_export_refuses_a_used_folder_or_one_outside_the_allowed_roots(
    tmp_path: Path,
) -> None:
    spec = _local(Path("unused"), model=ModelSource(azure_reference="azureml:diabetes:3"))
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("mine")
    with pytest.raises(AzureExportError, match="not an empty folder"):
        export_online(used, OnlineEndpointSpec("my-endpoint"), spec)
    assert [p.name for p in used.iterdir()] == ["keep.txt"]
    with pytest.raises(UnsafePathError):
        export_online(
            tmp_path / "out", OnlineEndpointSpec("my-endpoint"), spec, [tmp_path / "data"]
        )
    assert not (tmp_path / "out").exists()


def test_bad_values_are_refused_before_writing(tmp_path: Path) -> None:
    spec = _local(Path("unused"), model=ModelSource(azure_reference="azureml:diabetes:3"))
    with pytest.raises(AzureSpecError, match="Auth mode"):
        export_online(tmp_path / "a", OnlineEndpointSpec("my-endpoint", "none"), spec)
    with pytest.raises(AzureSpecError, match="Instance count"):
        export_online(
            tmp_path / "b",
            OnlineEndpointSpec("my-endpoint"),
            _local(Path("unused"), model=spec.model, instance_count=0),
        )
    with pytest.raises(AzureSpecError, match="request_timeout_ms"):
        export_online(
            tmp_path / "c",
            OnlineEndpointSpec("my-endpoint"),
            _local(
                Path("unused"), model=spec.model, request_settings={"request_timeout_ms": 200_000}
            ),
        )
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "variables",
    [
        {"AZURE_CLIENT_SECRET": "not-a-real-one"},
        {"DB_PASSWORD": "hunter2-long-value"},
        {"OPENAI_API_KEY": "sk-test-value-123"},
        {"STORAGE": "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc=="},
        {"DATA_URL": "https://a.blob.core.windows.net/c?sv=2022-11-02&sig=abc"},
    ],
)
def test_secret_looking_variables_are_refused_with_how_to_pass_secrets(
    tmp_path: Path, variables: dict[str, str]
) -> None:
    spec = _local(
        Path("unused"),
        model=ModelSource(azure_reference="azureml:diabetes:3"),
        environment_variables=variables,
    )
    with pytest.raises(AzureExportError, match="looks like a secret") as refused:
        export_online(tmp_path / "out", OnlineEndpointSpec("my-endpoint"), spec)
    assert "Key Vault" in str(refused.value)
    assert not any(value in str(refused.value) for value in variables.values())
    assert not (tmp_path / "out").exists()


def test_plain_settings_are_exported(tmp_path: Path) -> None:
    spec = _local(
        Path("unused"),
        model=ModelSource(azure_reference="azureml:diabetes:3"),
        environment_variables={"KEY_COLUMN": "id", "LOG_LEVEL": "INFO"},
    )
    result = export_online(tmp_path / "out", OnlineEndpointSpec("my-endpoint"), spec)
    written = yaml.safe_load((result.folder / "deployment.yml").read_text())
    assert written["environment_variables"] == {"KEY_COLUMN": "id", "LOG_LEVEL": "INFO"}


def test_traffic_rules_match_the_local_ones() -> None:
    validate_traffic(["blue", "green"], {"blue": 100}, {"green": 50})
    with pytest.raises(TrafficError, match="sum to 90"):
        validate_traffic(["blue", "green"], {"blue": 80, "green": 10})
    with pytest.raises(TrafficError, match="0 to 50"):
        validate_traffic(["blue", "green"], {"blue": 100}, {"green": 60})
    with pytest.raises(TrafficError, match="live or mirrored"):
        validate_traffic(["blue", "green"], {"blue": 50, "green": 50}, {"green": 10})
    with pytest.raises(TrafficError, match="no such deployment"):
        endpoint_entity(OnlineEndpointSpec("my-endpoint", traffic={"red": 100}), ["blue"])


def test_cli_export_and_its_errors(
    tmp_path: Path, azure_diabetes_model: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "cli-out"
    code = main(
        [
            "azure", "export", "--model", str(azure_diabetes_model), "--endpoint", "my-endpoint",
            "--deployment", "blue", "--instance-type", "Standard_F2s_v2", "--out", str(out),
        ]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "az ml online-deployment create -f deployment.yml --all-traffic" in printed
    assert (out / "model" / "MLmodel").is_file()
    assert main(["azure", "export", "--model", str(azure_diabetes_model), "--endpoint",
                 "my-endpoint", "--deployment", "blue", "--out", str(out)]) == 2  # fmt: skip
    assert "not an empty folder" in capsys.readouterr().err
    # --azure-model (our version taken for the workspace's) is gone: the version is asked.
    with pytest.raises(SystemExit):
        main(["azure", "export", "--model", str(azure_diabetes_model), "--endpoint", "e",
              "--deployment", "blue", "--out", str(tmp_path / "x"), "--azure-model"])  # fmt: skip
    assert main(["azure", "export", "--model", str(azure_diabetes_model), "--endpoint", "e",
                 "--deployment", "blue", "--out", str(tmp_path / "y"),
                 "--azure-version", "3"]) == 2  # fmt: skip
    assert "not a registered model" in capsys.readouterr().err


def test_cli_export_of_a_workspace_version_writes_request_json(
    tmp_path: Path, seeded, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "cli-ws"
    code = main(
        [
            "azure", "export", "--model", IRIS, "--endpoint", "iris-ep", "--deployment", "blue",
            "--azure-version", "4", "--out", str(out),
        ]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "The deployment uses azureml:iris-classifier:4." in printed
    assert "--request-file request.json" in printed
    assert yaml.safe_load((out / "deployment.yml").read_text())["model"] == (
        "azureml:iris-classifier:4"
    )
    assert json.loads((out / "request.json").read_text())["input_data"]["data"]
    assert not (out / "model").exists()


def _ran(name: str, model_uri: str, state: str, environment: dict | None, minute: int):
    from datetime import UTC, datetime

    from deploystudio.deployment.base import Deployment, DeploymentState, Runtime

    at = datetime(2026, 12, 5, 8, minute, tzinfo=UTC)
    return Deployment(
        endpoint_name="shop", name=name, model_uri=model_uri, runtime=Runtime.AZUREML,
        bundle=None, state=DeploymentState(state), reason=None, log_tail=None, pid=None,
        port=None, log_path=None, created_at=at, updated_at=at, environment=environment,
    )


def test_the_export_pins_from_what_the_deployment_recorded(tmp_path: Path) -> None:
    """Part 7 of issue 19: the pins come from the environment a local deployment of the same
    model recorded, not from whichever environment happens to exist for it. (A deployment
    that ran in a model environment, pinned: test_worker_model_environment.)"""
    from deploystudio.deployment.azure.pinning import pinned_environment

    app = {"mode": "app", "key": None, "python": "/usr/bin/python3", "python_version": "3.11"}
    model = {"mode": "model", "key": "feedbeef", "python": "/p", "python_version": "3.11"}
    home = tmp_path / "home"
    none = pinned_environment("models:/heart/3", [], home)
    assert none.environment is None and "no local deployment of models:/heart/3" in none.note
    # Another version's deployment is not this model's.
    other = [_ran("blue", "models:/heart/2", "ready", model, 1)]
    assert "no local deployment" in pinned_environment("models:/heart/3", other, home).note
    # The ready deployment ran in the app's environment: nothing pinned, and why.
    records = [
        _ran("blue", "models:/heart/3", "ready", app, 1),
        _ran("green", "models:/heart/3", "failed", model, 5),
    ]
    chosen = pinned_environment("models:/heart/3", records, home)
    assert chosen.environment is None
    assert "shop/blue ran in the app's environment" in chosen.note
    # Only the failed one recorded a model environment, since removed: said, not pinned.
    gone = pinned_environment("models:/heart/3", records[1:], home)
    assert gone.environment is None and "feedbeef" in gone.note and "removed" in gone.note
    # A local folder matches the same folder however it is written.
    folder = tmp_path / "m"
    folder.mkdir()
    local = [_ran("blue", str(folder), "ready", app, 1)]
    assert "shop/blue" in pinned_environment(f"{folder}/", local, home).note
