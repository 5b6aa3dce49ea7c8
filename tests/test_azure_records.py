"""Azure records beyond online endpoints: batch operations recorded and resumed after a restart,
online and batch endpoints of the same name kept apart, auth modes as AuthMode, and the SDK's
console output kept off stdout. Real azure-ai-ml over the fake ARM transport; real SQLite store.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from components.azure_target import subject
from deploystudio.config import Settings, load_settings, read_secrets_section
from deploystudio.deployment.azure.output import logger as output_logger
from deploystudio.deployment.azure.output import redact
from deploystudio.deployment.azure.records import BATCH, ONLINE
from deploystudio.deployment.base import AuthMode, local_auth_mode
from deploystudio.deployment.batch.settings import BatchSettings
from deploystudio.deployment.local.target import LocalTarget
from deploystudio.deployment.store import DeploymentStore
from deploystudio.errors import EndpointAuthError
from tests.azure_fake import FakeAzureML, fake_target

MODEL = "azureml:diabetes-regressor:1"


@pytest.fixture
def fake() -> FakeAzureML:
    return FakeAzureML()


@pytest.fixture
def store(tmp_path: Path) -> DeploymentStore:
    return DeploymentStore(tmp_path / "deployments.db", actor="tester")


def _stop_when(prefix: str):
    def progress(message: str) -> None:
        if message.startswith(prefix):
            raise KeyboardInterrupt("app stopped")

    return progress


def test_batch_operations_are_recorded_and_resumed_after_a_restart(
    fake: FakeAzureML, settings: Settings, store: DeploymentStore
) -> None:
    first = fake_target(fake, settings, store)
    first.batch.create_endpoint("diabetes-batch")
    assert first.batch_records.get("diabetes-batch").state == "ready"
    fake.hold_operations = True
    with pytest.raises(KeyboardInterrupt):
        first.batch.create_deployment(
            "blue", "diabetes-batch", MODEL, BatchSettings(), "cpu-cluster",
            progress=_stop_when("create batch deployment"),
        )  # fmt: skip
    pending = first.batch_records.pending()
    assert [(r.target, r.operation, r.kind) for r in pending] == [
        ("diabetes-batch/blue", "create", BATCH)
    ]
    assert pending[0].continuation_token
    assert "token-never-stored" not in pending[0].continuation_token
    assert pending[0].model_uri == MODEL and pending[0].settings["compute"] == "cpu-cluster"
    assert first.records.pending() == []  # not mixed with the online rows

    fake.hold_operations = False
    second = fake_target(fake, settings, DeploymentStore(store.path, actor="restarted"))
    progress: list[str] = []
    finished = second.resume_pending(progress.append)
    assert [(r.target, r.kind, r.state) for r in finished] == [
        ("diabetes-batch/blue", BATCH, "ready")
    ]
    assert len(fake.of_route("batch_deployment", "PUT")) == 1  # never sent again
    assert any(m.startswith("Resuming: create batch diabetes-batch/blue") for m in progress)
    assert second.batch.get_deployment("blue", "diabetes-batch").state == "Succeeded"
    assert "azure batch create" in [e.action for e in second.store.history("diabetes-batch")]

    # A delete stopped mid-way: resumed, the record goes with the endpoint.
    fake.hold_operations = True
    with pytest.raises(KeyboardInterrupt):
        second.batch.delete_endpoint("diabetes-batch", progress=_stop_when("delete batch"))
    assert [r.operation for r in second.batch_records.pending()] == ["delete"]
    fake.hold_operations = False
    third = fake_target(fake, settings, DeploymentStore(store.path, actor="third"))
    third.resume_pending()
    assert len(fake.of_route("batch_endpoint", "DELETE")) == 1
    assert "diabetes-batch" not in fake.batch_endpoints
    assert third.batch_records.get("diabetes-batch") is None


def test_a_failed_resumed_batch_operation_keeps_the_batch_wording(
    fake: FakeAzureML, settings: Settings, store: DeploymentStore
) -> None:
    first = fake_target(fake, settings, store)
    fake.hold_operations = True
    fake.fail_operation("OutOfQuota", "Not enough cores for the cluster")
    with pytest.raises(KeyboardInterrupt):
        first.batch.create_endpoint("nightly-batch", progress=_stop_when("create batch"))
    fake.hold_operations = False
    finished = fake_target(fake, settings, store).resume_pending()
    assert [(r.kind, r.state) for r in finished] == [(BATCH, "failed")]
    assert "quota" in finished[0].reason.lower()


def test_online_and_batch_endpoints_of_one_name_stay_apart(
    fake: FakeAzureML, settings: Settings, store: DeploymentStore
) -> None:
    target = fake_target(fake, settings, store)
    target.create_endpoint("shared-name", {"auth_mode": "aad_token"})
    target.batch.create_endpoint("shared-name")
    target.batch.delete_endpoint("shared-name")
    # Deleting the batch endpoint left the online one's record alone.
    online = target.records.get("shared-name")
    assert online is not None and online.kind == ONLINE and online.auth_mode is AuthMode.AAD_TOKEN
    assert target.batch_records.get("shared-name") is None
    assert target.get_endpoint("shared-name").auth_mode is AuthMode.AAD_TOKEN
    # The operation runner holds one subject per kind of endpoint.
    assert subject("shared-name") != subject("shared-name", BATCH)
    assert subject("shared-name", ONLINE) == subject("shared-name")


def test_auth_modes_are_one_enum_and_local_endpoints_refuse_azure_ones(
    fake: FakeAzureML, settings: Settings, store: DeploymentStore, tmp_path: Path
) -> None:
    target = fake_target(fake, settings, store)
    endpoint = target.create_endpoint("token-ep", {"auth_mode": AuthMode.AML_TOKEN})
    assert endpoint.auth_mode is AuthMode.AML_TOKEN
    assert fake.of_route("endpoint", "PUT")[0].body["properties"]["authMode"] == "AMLToken"
    assert target.records.get("token-ep").settings["auth_mode"] == "aml_token"

    assert local_auth_mode("none") is AuthMode.NONE
    local_store = DeploymentStore(tmp_path / "local.db")
    local = LocalTarget(settings, store=local_store)
    for mode in ("aml_token", AuthMode.AAD_TOKEN):
        with pytest.raises(EndpointAuthError, match=r"checked by Azure only.*'key' or 'none'"):
            local.create_endpoint("local-ep", {"auth_mode": mode})
    with pytest.raises(EndpointAuthError, match="'password': choose 'key' or 'none'"):
        local.create_endpoint("local-ep", {"auth_mode": "password"})
    assert local_store.list_endpoints() == []  # refused before anything was written


def test_secrets_sections_are_read_through_the_public_reader(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.toml"
    assert read_secrets_section("azure", secrets) == {}  # no file
    secrets.write_text(
        '[azure]\nsubscription_id = "sub"\n[deploystudio]\npage_size = 7\nplain = "x"\n'
        "scalar = 3\n",
        encoding="utf-8",
    )
    assert read_secrets_section("azure", secrets) == {"subscription_id": "sub"}
    assert read_secrets_section("missing", secrets) == {}
    assert read_secrets_section("scalar", secrets) == {}  # not a table
    assert load_settings({"DEPLOYSTUDIO_HOME": str(tmp_path)}, secrets).registry_page_size == 7


def test_the_sdk_prints_nothing_to_stdout_or_stderr(
    fake: FakeAzureML,
    settings: Settings,
    store: DeploymentStore,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    target = fake_target(fake, settings, store)
    fake.polls_before_done = 3  # several polls, each of which the SDK marks with a dot
    with caplog.at_level(logging.DEBUG, logger=output_logger.name):
        target.deploy_model("quiet-ep", "blue", "azureml:iris-classifier:2", all_traffic=True)
        target.regenerate_key("quiet-ep", "secondary")
        target.batch.create_endpoint("quiet-batch")
    print("our own line")  # output that is not the SDK's passes through
    out, err = capfd.readouterr()
    assert out == "our own line\n"
    assert "Check: endpoint" not in err and "." not in err.replace("our own line", "")
    # What the SDK said is kept at DEBUG instead, without any key.
    diverted = [r.getMessage() for r in caplog.records if r.name == output_logger.name]
    assert any("Check: endpoint quiet-ep exists" in m for m in diverted), diverted
    keys = fake.keys["quiet-ep"].values()
    assert not any(key in m for m in diverted for key in keys)
    # Outside Azure calls the streams are the test's own again.
    assert type(sys.stdout).__name__ != "_SdkDiverter"
    assert redact("https://a.blob.core.windows.net/c/x?sv=2024&sig=s3cr3t%2B&se=1") == (
        "https://a.blob.core.windows.net/c/x?sv=***&sig=***&se=***"
    )
