"""Each Azure failure, injected in the fake ARM transport, reaches the user as the right
DeployStudioError with a message that says what to do (through AzureTarget and the real SDK)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

from deploystudio.config import Settings
from deploystudio.deployment.azure.online import AzureTarget
from deploystudio.deployment.azure.workspace import AzureWorkspace
from deploystudio.deployment.store import DeploymentStore
from deploystudio.errors import (
    AzureConflictError,
    AzureConnectionError,
    AzureNotReadyError,
    AzureOperationCanceledError,
    AzureOperationError,
    AzurePermissionError,
    AzureQuotaError,
    AzureSpecError,
    AzureThrottledError,
    DeploymentNotFoundError,
    EndpointNotFoundError,
    OperationInProgressError,
)
from tests.azure_fake import FakeAzureML, StaticToken

MODEL = "azureml:iris-classifier:2"
ENDPOINT = "err-ep"
_names = (f"dep{i}" for i in itertools.count())


class RefusingCredential:
    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        raise ClientAuthenticationError("AADSTS7000215: Invalid client secret provided.")


def _workspace(fake: FakeAzureML) -> AzureWorkspace:
    return AzureWorkspace(fake.subscription_id, fake.resource_group, fake.workspace_name)


@pytest.fixture(scope="module")
def fake() -> FakeAzureML:
    return FakeAzureML()


@pytest.fixture(scope="module")
def target(
    fake: FakeAzureML, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AzureTarget:
    store = DeploymentStore(tmp_path_factory.mktemp("azure-errors") / "deployments.db")
    target = AzureTarget(
        settings, _workspace(fake), StaticToken("token"), transport=fake, store=store
    )
    target.create_endpoint(ENDPOINT)
    return target


def _deploy(target: AzureTarget, **config: object) -> str:
    name = next(_names)
    target.create_deployment(name, MODEL, ENDPOINT, config)
    return name


def test_out_of_quota_names_the_instances_and_the_ways_out(
    target: AzureTarget, fake: FakeAzureML
) -> None:
    fake.fail_operation("OutOfQuota", "Not enough quota available for Standard_F4s_v2")
    with pytest.raises(AzureQuotaError) as caught:
        _deploy(target, instance_type="Standard_F4s_v2", instance_count=3)
    message = str(caught.value)
    assert "3 x Standard_F4s_v2" in message
    assert "Ask for more quota" in message and "smaller instance type" in message


def test_resource_not_ready_quotes_the_container_log(
    target: AzureTarget, fake: FakeAzureML
) -> None:
    name = "notready"
    fake.logs[(ENDPOINT, name)] = "".join(f"boot {i}\n" for i in range(50)) + (
        "ModuleNotFoundError: No module named 'lightgbm'\n"
    )
    fake.fail_operation("ResourceNotReady", "User container has crashed or terminated")
    with pytest.raises(AzureNotReadyError) as caught:
        target.create_deployment(name, MODEL, ENDPOINT)
    message = str(caught.value)
    assert "No module named 'lightgbm'" in message and "boot 49" in message
    assert "boot 5\n" not in message  # only the tail
    assert fake.of_route("get_logs")[-1].body["tail"] == 30
    record = target.records.get(ENDPOINT, name)
    assert record.state == "failed" and "lightgbm" in record.log_tail
    assert target.get_deployment(name, ENDPOINT).log_tail == record.log_tail


def test_401_says_to_sign_in_and_403_names_the_role(target: AzureTarget, fake: FakeAzureML) -> None:
    fake.fail("deployment", 401, "InvalidAuthenticationToken", "The token is expired", "PUT")
    with pytest.raises(AzureConnectionError, match="401") as caught:
        _deploy(target)
    assert "az login" in str(caught.value) and "AZURE_CLIENT_SECRET" in str(caught.value)

    fake.fail("deployment", 403, "AuthorizationFailed", "No write permission", "PUT")
    with pytest.raises(AzurePermissionError, match="403") as caught:
        _deploy(target)
    assert "AzureML Data Scientist" in str(caught.value)


def test_a_credential_that_cannot_sign_in_gives_the_connection_error(
    fake: FakeAzureML, settings: Settings, tmp_path: Path
) -> None:
    store = DeploymentStore(tmp_path / "deployments.db")
    target = AzureTarget(settings, _workspace(fake), RefusingCredential(), fake, store)
    sent = len(fake.requests)
    with pytest.raises(AzureConnectionError, match="No credential could sign in") as caught:
        target.list_endpoints()
    assert "az login" in str(caught.value)
    assert len(fake.requests) == sent  # no token, so nothing reached Azure


def test_409_says_another_operation_is_running(target: AzureTarget, fake: FakeAzureML) -> None:
    fake.fail("endpoint", 409, "Conflict", "An operation is already in progress", "PUT")
    with pytest.raises(AzureConflictError) as caught:
        target.update_endpoint(ENDPOINT, {"description": "new"})
    assert isinstance(caught.value, OperationInProgressError)
    assert "Another operation" in str(caught.value) and "wait for it" in str(caught.value)


def test_a_canceled_operation_says_so(target: AzureTarget, fake: FakeAzureML) -> None:
    fake.fail_operation("Canceled")
    with pytest.raises(AzureOperationCanceledError, match="canceled before it finished"):
        _deploy(target)


def test_429_is_retried_by_the_sdk_then_says_to_wait(
    target: AzureTarget, fake: FakeAzureML
) -> None:
    before = len(fake.of_route("deployment", "PUT"))
    fake.fail("deployment", 429, "TooManyRequests", "Slow down", "PUT", {"Retry-After-Ms": "1"}, 9)
    with pytest.raises(AzureThrottledError, match="Wait a minute"):
        _deploy(target)
    # The SDK's retry policy sent it again, waiting as Retry-After said, before giving up.
    assert len(fake.of_route("deployment", "PUT")) - before > 1
    fake._failures.clear()


def test_sdk_validation_and_missing_resources(target: AzureTarget, fake: FakeAzureML) -> None:
    target.create_endpoint("token-ep", {"auth_mode": "aml_token"})
    # azure-ai-ml refuses this itself (ValidationException) before sending anything.
    with pytest.raises(AzureSpecError, match="does not use keys"):
        target.regenerate_key("token-ep", "primary")
    with pytest.raises(DeploymentNotFoundError, match="no deployment 'ghost'"):
        target.get_deployment("ghost", ENDPOINT)
    with pytest.raises(EndpointNotFoundError, match="no online endpoint 'ghost-ep'"):
        target.delete_deployment("blue", "ghost-ep")


def test_any_other_azure_refusal_keeps_its_code(target: AzureTarget, fake: FakeAzureML) -> None:
    fake.fail("deployment", 400, "BadArgument", "instanceType Standard_XYZ is not supported")
    with pytest.raises(AzureOperationError, match="400 BadArgument") as caught:
        _deploy(target)
    assert "Standard_XYZ is not supported" in str(caught.value)
