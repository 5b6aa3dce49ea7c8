"""AzureTarget over the real azure-ai-ml, talking to the fake ARM transport (tests/azure_fake.py).

Only the network is fake: MLClient sends its real requests, our records live in a real SQLite
deployment store, and a restart is a second AzureTarget on the same store.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd
import pytest

from deploystudio.config import Settings
from deploystudio.deployment.azure.online import AzureTarget
from deploystudio.deployment.base import DeploymentState, Runtime
from deploystudio.deployment.store import DeploymentStore
from deploystudio.errors import (
    AzureImageBuildError,
    AzureSpecError,
    EndpointNotFoundError,
    ResourceInUseError,
    TrafficError,
)
from deploystudio.payload_formats import ModelInput
from tests.azure_fake import FakeAzureML, fake_target

MODEL = "azureml:iris-classifier:2"


@pytest.fixture
def fake() -> FakeAzureML:
    return FakeAzureML()


@pytest.fixture
def store(tmp_path: Path) -> DeploymentStore:
    return DeploymentStore(tmp_path / "deployments.db", actor="tester")


@pytest.fixture
def target(fake: FakeAzureML, settings: Settings, store: DeploymentStore) -> AzureTarget:
    return fake_target(fake, settings, store)


@pytest.fixture
def two_deployments(target: AzureTarget) -> AzureTarget:
    target.create_endpoint("iris-ep", {"auth_mode": "key", "description": "Iris"})
    for name in ("blue", "green"):
        target.create_deployment(name, MODEL, "iris-ep", {"instance_type": "Standard_F2s_v2"})
    return target


def test_create_endpoint_and_deployment_report_progress_and_records(
    target: AzureTarget, fake: FakeAzureML
) -> None:
    messages: list[str] = []
    fake.polls_before_done = 20  # long enough to be seen running
    endpoint = target.create_endpoint(
        "iris-ep", {"auth_mode": "aml_token", "tags": {"team": "ml"}}, progress=messages.append
    )
    assert endpoint.state is DeploymentState.READY
    assert endpoint.auth_mode == "aml_token"
    assert endpoint.scoring_uri.endswith("/score")
    assert fake.of_route("endpoint", "PUT")[0].body["properties"]["authMode"] == "AMLToken"
    # The SDK's status as it went, then the final state.
    assert any("InProgress" in m for m in messages)
    assert "Succeeded" in messages[-2] and messages[-1].startswith("Done"), messages
    fake.polls_before_done = 1

    deployment = target.create_deployment(
        "blue", MODEL, "iris-ep", {"instance_type": "Standard_F2s_v2", "instance_count": 2}
    )
    put = fake.of_route("deployment", "PUT")[0].body
    assert put["properties"]["model"].endswith("/models/iris-classifier/versions/2")
    assert put["properties"]["instanceType"] == "Standard_F2s_v2"
    assert put["sku"]["capacity"] == 2
    assert "codeConfiguration" not in put["properties"]  # no-code MLflow deployment
    assert deployment.state is DeploymentState.READY
    assert deployment.runtime is Runtime.AZUREML
    assert deployment.model_uri == MODEL
    assert deployment.settings["instance_count"] == 2

    record = target.records.get("iris-ep", "blue")
    assert record.state == "ready" and record.continuation_token is None
    assert [d.name for d in target.list_deployments("iris-ep")] == ["blue"]
    assert [e.name for e in target.list_endpoints()] == ["iris-ep"]
    actions = [entry.action for entry in target.store.history("iris-ep")]
    assert "azure create" in actions


def test_traffic_and_mirror_updates_are_checked_then_sent(
    two_deployments: AzureTarget, fake: FakeAzureML
) -> None:
    target = two_deployments
    puts_before = len(fake.of_route("endpoint", "PUT"))
    with pytest.raises(TrafficError, match="sum to 90"):
        target.set_traffic("iris-ep", {"blue": 80, "green": 10})
    with pytest.raises(TrafficError, match="live or mirrored"):
        target.set_traffic("iris-ep", {"blue": 50, "green": 50}, mirror=("green", 10))
    with pytest.raises(TrafficError, match="50"):
        target.set_traffic("iris-ep", {"blue": 100}, mirror=("green", 60))
    assert len(fake.of_route("endpoint", "PUT")) == puts_before  # nothing sent

    endpoint = target.set_traffic("iris-ep", {"blue": 100}, mirror=("green", 20))
    body = fake.of_route("endpoint", "PUT")[-1].body["properties"]
    assert body["traffic"] == {"blue": 100}
    assert body["mirrorTraffic"] == {"green": 20}
    assert endpoint.traffic == {"blue": 100, "green": 0}
    assert endpoint.mirror == ("green", 20)
    # Other endpoint settings survive a traffic change.
    assert endpoint.description == "Iris"

    endpoint = target.set_traffic("iris-ep", {"blue": 10, "green": 90})
    assert endpoint.traffic == {"blue": 10, "green": 90} and endpoint.mirror is None


def test_delete_refuses_a_deployment_with_traffic_and_is_idempotent(
    two_deployments: AzureTarget, fake: FakeAzureML
) -> None:
    target = two_deployments
    target.set_traffic("iris-ep", {"blue": 100})
    with pytest.raises(ResourceInUseError, match="100% of live traffic"):
        target.delete_deployment("blue", "iris-ep")
    target.delete_deployment("green", "iris-ep")
    assert ("iris-ep", "green") not in fake.deployments
    assert target.records.get("iris-ep", "green") is None
    target.delete_deployment("green", "iris-ep")  # already gone: nothing to do
    assert len(fake.of_route("deployment", "DELETE")) == 1

    target.delete_endpoint("iris-ep")
    assert "iris-ep" not in fake.endpoints and target.records.all() == []
    target.delete_endpoint("iris-ep")
    assert len(fake.of_route("endpoint", "DELETE")) == 1
    with pytest.raises(EndpointNotFoundError, match="iris-ep"):
        target.get_endpoint("iris-ep")


def test_keys_logs_and_scoring_on_a_named_deployment(
    two_deployments: AzureTarget, fake: FakeAzureML, settings: Settings
) -> None:
    target = two_deployments
    target.set_traffic("iris-ep", {"blue": 100})
    keys = target.get_keys("iris-ep")
    assert keys.primary == fake.keys["iris-ep"]["primaryKey"]
    assert keys.primary not in repr(keys)
    rotated = target.regenerate_key("iris-ep", "secondary")
    assert rotated.primary == keys.primary and rotated.secondary != keys.secondary

    fake.logs[("iris-ep", "green")] = "".join(f"line {i}\n" for i in range(10))
    assert target.get_logs("green", "iris-ep", lines=3) == "line 7\nline 8\nline 9\n"

    body = {"input_data": {"columns": ["a", "b"], "index": [0, 1], "data": [[1, 2], [3, 4]]}}
    assert target.predict(inputs=body, endpoint="iris-ep") == ["blue", "blue"]
    assert target.predict("green", body, endpoint="iris-ep") == ["green", "green"]
    # A parsed input is sent in Azure's input_data form, with the params beside it.
    frame = ModelInput(pd.DataFrame({"a": [1.0, 2.0, 3.0]}))
    assert target.predict("blue", frame, "iris-ep", {"threshold": 0.3}) == ["blue"] * 3
    sent = fake.of_route("score")[-1].body
    assert sent["input_data"]["columns"] == ["a"] and sent["params"] == {"threshold": 0.3}
    target.predict("green", body, endpoint="iris-ep")
    scored = fake.of_route("score")
    assert scored[-1].headers["azureml-model-deployment"] == "green"
    assert scored[-1].body == body
    # The request file the SDK needs is gone once the call returns.
    assert list((settings.home / "work" / "azure").iterdir()) == []


def test_a_failed_image_build_is_recorded_and_explained(
    target: AzureTarget, fake: FakeAzureML
) -> None:
    target.create_endpoint("iris-ep")
    fake.fail_operation("ImageBuildFailure", "Conda dependencies failed: pip install foo==9")
    with pytest.raises(AzureImageBuildError, match="build log") as caught:
        target.create_deployment("blue", MODEL, "iris-ep")
    assert "pip install foo==9" in str(caught.value)
    record = target.records.get("iris-ep", "blue")
    assert record.state == "failed" and "ImageBuildFailure" not in (record.operation or "")
    assert "build log" in record.reason
    assert target.get_deployment("blue", "iris-ep").state is DeploymentState.FAILED


def test_unknown_settings_and_bad_values_are_refused_before_any_request(
    target: AzureTarget, fake: FakeAzureML
) -> None:
    target.create_endpoint("iris-ep")
    sent = len(fake.requests)
    with pytest.raises(AzureSpecError, match="instance_cuont"):
        target.create_deployment("blue", MODEL, "iris-ep", {"instance_cuont": 2})
    with pytest.raises(AzureSpecError, match="Instance count"):
        target.create_deployment("blue", MODEL, "iris-ep", {"instance_count": 0})
    with pytest.raises(AzureSpecError, match="Auth mode"):
        target.create_endpoint("other-ep", {"auth_mode": "password"})
    # Only reads of the endpoint, no PUT.
    assert {r.method for r in fake.requests[sent:]} <= {"GET"}


def test_a_restarted_app_resumes_watching_instead_of_resubmitting(
    fake: FakeAzureML, settings: Settings, store: DeploymentStore
) -> None:
    first = fake_target(fake, settings, store)
    first.create_endpoint("iris-ep")
    fake.hold_operations = True
    # The first app run sends the PUT, then "stops": its wait is abandoned mid-operation.
    sent = threading.Event()

    def stop_after_submit(message: str) -> None:
        if message.startswith("create deployment"):
            sent.set()
            raise KeyboardInterrupt("app stopped")

    with pytest.raises(KeyboardInterrupt):
        first.create_deployment("blue", MODEL, "iris-ep", progress=stop_after_submit)
    assert sent.is_set()
    pending = first.records.pending()
    assert [(r.target, r.operation) for r in pending] == [("iris-ep/blue", "create")]
    assert pending[0].continuation_token  # the operation's polling state, kept in the store
    assert "token-never-stored" not in pending[0].continuation_token

    fake.hold_operations = False
    second = fake_target(fake, settings, DeploymentStore(store.path, actor="restarted"))
    progress: list[str] = []
    finished = second.resume_pending(progress.append)
    assert [(r.target, r.state) for r in finished] == [("iris-ep/blue", "ready")]
    assert len(fake.of_route("deployment", "PUT")) == 1  # never sent again
    assert any(m.startswith("Resuming: create iris-ep/blue") for m in progress)
    assert progress[-1].startswith("Finished")
    assert second.get_deployment("blue", "iris-ep").state is DeploymentState.READY
    assert second.records.pending() == []


def test_a_resumed_operation_that_fails_records_the_reason(
    fake: FakeAzureML, settings: Settings, store: DeploymentStore
) -> None:
    first = fake_target(fake, settings, store)
    first.create_endpoint("iris-ep")
    fake.hold_operations = True
    fake.fail_operation("OutOfQuota", "Not enough Standard_F2s_v2 cores")

    def stop(message: str) -> None:
        if message.startswith("create deployment"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        first.create_deployment("blue", MODEL, "iris-ep", progress=stop)
    fake.hold_operations = False
    finished = fake_target(fake, settings, store).resume_pending()
    assert finished[0].state == "failed"
    assert "quota" in finished[0].reason.lower()


def test_deploy_model_creates_what_is_missing_then_moves_traffic(
    target: AzureTarget, fake: FakeAzureML
) -> None:
    progress: list[str] = []
    record = target.deploy_model(
        "new-ep", "blue", MODEL, {"instance_count": 1}, all_traffic=True, progress=progress.append
    )
    assert record.state is DeploymentState.READY
    assert [r.route for r in fake.requests if r.method == "PUT"] == [
        "endpoint",
        "deployment",
        "endpoint",
    ]
    assert fake.of_route("endpoint", "PUT")[-1].body["properties"]["traffic"] == {"blue": 100}
    assert any("does not exist yet" in m for m in progress)
    # Again with another model: the same deployment is updated in place (one more PUT).
    target.deploy_model("new-ep", "blue", "azureml:iris-classifier:3", progress=progress.append)
    assert (
        fake.of_route("deployment", "PUT")[-1]
        .body["properties"]["model"]
        .endswith("/iris-classifier/versions/3")
    )
    assert target.get_deployment("blue", "new-ep").model_uri == "azureml:iris-classifier:3"
