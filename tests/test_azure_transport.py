"""What the real azure-ai-ml sends for our entities, through the fake ARM transport."""

from __future__ import annotations

import time

import pytest
from azure.core.exceptions import HttpResponseError

from deploystudio.deployment.azure.specs import (
    ModelSource,
    OnlineDeploymentSpec,
    OnlineEndpointSpec,
    deployment_entity,
    endpoint_entity,
)
from deploystudio.deployment.azure.workspace import AzureWorkspace, ml_client
from tests.azure_fake import FakeAzureML, StaticToken


@pytest.fixture
def fake() -> FakeAzureML:
    return FakeAzureML()


@pytest.fixture
def client(fake: FakeAzureML):
    workspace = AzureWorkspace(fake.subscription_id, fake.resource_group, fake.workspace_name)
    return ml_client(workspace, StaticToken("token"), transport=fake)


def _blue(**changes) -> OnlineDeploymentSpec:
    values = dict(
        name="blue",
        endpoint_name="my-endpoint",
        model=ModelSource(azure_reference="azureml:iris-classifier:2"),
        instance_type="Standard_F2s_v2",
        instance_count=2,
        request_settings={"request_timeout_ms": 9000, "max_concurrent_requests_per_instance": 2},
        liveness_probe={"initial_delay": 30, "period": 10},
        readiness_probe={"failure_threshold": 5},
        environment_variables={"LOG_LEVEL": "debug"},
    )
    values.update(changes)
    return OnlineDeploymentSpec(**values)


def test_endpoint_put_body(fake: FakeAzureML, client) -> None:
    spec = OnlineEndpointSpec("my-endpoint", "aml_token", "Iris", {"team": "ml"})
    created = client.online_endpoints.begin_create_or_update(endpoint_entity(spec)).result()
    put = fake.of_route("endpoint", "PUT")
    assert len(put) == 1
    body = put[0].body
    assert body["location"] == fake.location
    assert body["tags"] == {"team": "ml"}
    assert body["properties"]["authMode"] == "AMLToken"
    assert body["properties"]["description"] == "Iris"
    assert put[0].path.endswith("/onlineEndpoints/my-endpoint")
    # The SDK polled the operation until it ended, then read the endpoint back.
    assert fake.of_route("operation")
    assert created.provisioning_state.lower() == "succeeded"
    assert created.scoring_uri.endswith("/score")


def test_deployment_put_body(fake: FakeAzureML, client) -> None:
    client.online_endpoints.begin_create_or_update(
        endpoint_entity(OnlineEndpointSpec("my-endpoint"))
    ).result()
    client.online_deployments.begin_create_or_update(deployment_entity(_blue())).result()
    body = fake.of_route("deployment", "PUT")[0].body
    props = body["properties"]
    assert props["model"].endswith("/workspaces/ws-studio/models/iris-classifier/versions/2")
    assert props["instanceType"] == "Standard_F2s_v2"
    assert body["sku"]["capacity"] == 2
    assert props["requestSettings"]["requestTimeout"] == "PT9S"
    assert props["requestSettings"]["maxConcurrentRequestsPerInstance"] == 2
    assert props["livenessProbe"]["initialDelay"] == "PT30S"
    assert props["livenessProbe"]["period"] == "PT10S"
    assert props["readinessProbe"]["failureThreshold"] == 5
    assert props["environmentVariables"] == {"LOG_LEVEL": "debug"}
    assert props["endpointComputeType"] == "Managed"


def test_traffic_update_put(fake: FakeAzureML, client) -> None:
    client.online_endpoints.begin_create_or_update(
        endpoint_entity(OnlineEndpointSpec("my-endpoint"))
    ).result()
    for name in ("blue", "green"):
        client.online_deployments.begin_create_or_update(
            deployment_entity(_blue(name=name))
        ).result()
    spec = OnlineEndpointSpec("my-endpoint", traffic={"blue": 90, "green": 10}, mirror_traffic={})
    client.online_endpoints.begin_create_or_update(
        endpoint_entity(spec, deployments=["blue", "green"])
    ).result()
    assert fake.of_route("endpoint", "PUT")[-1].body["properties"]["traffic"] == {
        "blue": 90,
        "green": 10,
    }
    assert client.online_endpoints.get("my-endpoint").traffic == {"blue": 90, "green": 10}


def test_429_is_retried_after_retry_after(fake: FakeAzureML, client) -> None:
    fake.fail("endpoint", 429, "TooManyRequests", "Slow down", "PUT", {"Retry-After": "1"})
    started = time.monotonic()
    client.online_endpoints.begin_create_or_update(
        endpoint_entity(OnlineEndpointSpec("my-endpoint"))
    ).result()
    assert len(fake.of_route("endpoint", "PUT")) == 2
    assert time.monotonic() - started >= 1


def test_keys_and_logs(fake: FakeAzureML, client) -> None:
    client.online_endpoints.begin_create_or_update(
        endpoint_entity(OnlineEndpointSpec("my-endpoint"))
    ).result()
    client.online_deployments.begin_create_or_update(deployment_entity(_blue())).result()
    before = client.online_endpoints.get_keys("my-endpoint")
    assert before.primary_key == fake.keys["my-endpoint"]["primaryKey"]
    client.online_endpoints.begin_regenerate_keys("my-endpoint", key_type="secondary").result()
    after = client.online_endpoints.get_keys("my-endpoint")
    assert after.primary_key == before.primary_key
    assert after.secondary_key != before.secondary_key
    sent = fake.of_route("regenerate_keys")[0].body
    assert sent["keyType"] == "Secondary"
    assert sent["keyValue"] == before.secondary_key
    fake.logs[("my-endpoint", "blue")] = "one\ntwo\nthree\n"
    assert client.online_deployments.get_logs("blue", "my-endpoint", lines=2) == "two\nthree\n"
    assert fake.of_route("get_logs")[0].body["tail"] == 2


def test_a_failed_operation_reaches_the_caller_with_its_code(fake: FakeAzureML, client) -> None:
    client.online_endpoints.begin_create_or_update(
        endpoint_entity(OnlineEndpointSpec("my-endpoint"))
    ).result()
    fake.fail_operation("ImageBuildFailure", "conda env failed: pip install foo==9")
    with pytest.raises(HttpResponseError) as caught:
        client.online_deployments.begin_create_or_update(deployment_entity(_blue())).result()
    assert "ImageBuildFailure" in str(caught.value)
    assert fake.deployments[("my-endpoint", "blue")]["properties"]["provisioningState"] == "Failed"


def test_delete_endpoint(fake: FakeAzureML, client) -> None:
    client.online_endpoints.begin_create_or_update(
        endpoint_entity(OnlineEndpointSpec("my-endpoint"))
    ).result()
    client.online_endpoints.begin_delete("my-endpoint").result()
    assert "my-endpoint" not in fake.endpoints
    assert fake.of_route("endpoint", "DELETE")
