"""Export round trip: our specs -> folder -> azure-ai-ml loaders -> same fields, and the same
keys as Azure's own example YAML."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deploystudio.cli.main import main
from deploystudio.deployment.azure.export import export_online
from deploystudio.deployment.azure.specs import (
    ModelSource,
    OnlineDeploymentSpec,
    OnlineEndpointSpec,
    ScoringCode,
    endpoint_entity,
    validate_traffic,
)
from deploystudio.errors import AzureExportError, AzureSpecError, TrafficError, UnsafePathError
from tests.conftest import AZURE_FIXTURES

YAML = AZURE_FIXTURES / "yaml"
IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"


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
    assert set(ours["model"]) == set(example["model"])
    assert ours["model"]["path"] == "model"  # relative to the folder


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
