"""The Azure fault matrix's two axes: the operations Deploy Studio sends to Azure, and the
failures the fake ARM transport injects into them (tests/azure_fake.py). Everything but the HTTP
transport is real: azure-ai-ml 1.35, azure-core's retry and polling, AzureTarget, the store.

An `Op` knows how to prepare a case (the resources it needs, created through the target itself
so their records are real), where its decisive request goes (the route to fail), and which row
of the Azure records it writes. A `Fault` injects one failure and says what Azure made of the
request: never reached or refused (`NOT_STARTED`: the store must look as before), started then
ended badly (`ENDED`: the row is failed with a reason), or unknown (`MAYBE`: failed with a
reason, or pending and resumable).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from azure.core.credentials import AccessToken
from azure.core.exceptions import (
    ClientAuthenticationError,
    ServiceRequestError,
    ServiceResponseError,
)

from deploystudio.deployment.azure.records import BATCH, ONLINE
from deploystudio.deployment.batch.settings import BatchSettings
from deploystudio.errors import (
    AzureConflictError,
    AzureConnectionError,
    AzureOperationCanceledError,
    AzureOperationError,
    AzurePermissionError,
    AzureThrottledError,
    DeploymentNotFoundError,
    DeployStudioError,
    EndpointNotFoundError,
)
from tests.azure_fake import FakeAzureML

MODEL = "azureml:iris-classifier:2"
BATCH_MODEL = "azureml:diabetes-regressor:1"
DATA = "azureml://datastores/workspaceblobstore/paths/diabetes/inputs/"
CLIENT_SECRET = "client-secret-Zq8~never-shown"
NOT_STARTED, ENDED, MAYBE, SUCCEEDS = "not started", "ended", "maybe started", "succeeds"
# A message names what to do: one of these phrases (the messages of azure_errors.translate).
ADVICE = re.compile(
    r"try again|sign in|az login|ask (a|for)|refresh|wait|check|fix|start it again|"
    r"create it first|submit it again|open the|choose",
    re.IGNORECASE,
)
_numbers = itertools.count()


def fresh(prefix: str) -> str:
    """A resource name no earlier case used (Azure's rule: a letter first, 3-32 characters)."""
    return f"{prefix}{next(_numbers):04d}"


class RefusingCredential:
    """A service principal whose secret Azure AD refuses: get_token raises, as azure-identity's
    ClientSecretCredential does; the secret it holds must never show up anywhere."""

    def __init__(self) -> None:
        self.client_secret = CLIENT_SECRET

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        raise ClientAuthenticationError(
            "ClientSecretCredential authentication failed: AADSTS7000215: Invalid client "
            "secret provided. Ensure the secret being sent is the client secret value."
        )


@dataclass
class Case:
    """What one case works on: the target (signed in or not) and the names it prepared."""

    target: Any
    endpoint: str
    deployment: str = ""
    job: str = ""


@dataclass(frozen=True)
class Op:
    name: str
    kind: str  # ONLINE or BATCH: which records it writes
    route: str  # the decisive request's route in the fake
    method: str
    prepare: Callable[[Any, FakeAzureML], Case]
    call: Callable[[Case, Callable[[str], None]], Any]
    # Long-running: Azure answers with an operation that is polled.
    lro: bool = True
    # Which row it writes: "endpoint", "deployment", or None (a read, or a job).
    row: str | None = "endpoint"
    delete: bool = False

    def row_key(self, case: Case) -> tuple[str, str, str] | None:
        if self.row is None:
            return None
        return (self.kind, case.endpoint, case.deployment if self.row == "deployment" else "")


@dataclass(frozen=True)
class Fault:
    name: str
    inject: Callable[[FakeAzureML, str, str], None]
    outcome: str
    # The DeployStudioError subclass the user gets (None: the call succeeds).
    expected: type[DeployStudioError] | None
    lro_only: bool = False
    # Injected into the operation's polling instead of its first request.
    on_poll: bool = False
    refuses_sign_in: bool = False
    # A garbled body the SDK never reads (a DELETE's 202) changes nothing: success is right too.
    may_succeed: bool = False


# -- the operations ------------------------------------------------------------------------------


def _endpoint(target: Any, fake: FakeAzureML) -> Case:
    name = fresh("ep")
    target.create_endpoint(name)
    return Case(target, name)


def _deployment(target: Any, fake: FakeAzureML) -> Case:
    case = _endpoint(target, fake)
    case.deployment = "blue"
    target.create_deployment("blue", MODEL, case.endpoint)
    return case


def _batch_endpoint(target: Any, fake: FakeAzureML) -> Case:
    name = fresh("be")
    target.batch.create_endpoint(name)
    return Case(target, name)


def _batch_deployment(target: Any, fake: FakeAzureML) -> Case:
    case = _batch_endpoint(target, fake)
    case.deployment = "blue"
    target.batch.create_deployment("blue", case.endpoint, BATCH_MODEL, BatchSettings(), "cpu")
    return case


def _batch_job(target: Any, fake: FakeAzureML) -> Case:
    case = _batch_deployment(target, fake)
    case.job = target.batch.invoke(case.endpoint, DATA, deployment="blue")
    return case


def _new_endpoint(target: Any, fake: FakeAzureML) -> Case:
    return Case(target, fresh("ne"))


def _new_batch_endpoint(target: Any, fake: FakeAzureML) -> Case:
    return Case(target, fresh("nb"))


def _new_deployment(target: Any, fake: FakeAzureML) -> Case:
    case = _endpoint(target, fake)
    case.deployment = "green"
    return case


def _new_batch_deployment(target: Any, fake: FakeAzureML) -> Case:
    case = _batch_endpoint(target, fake)
    case.deployment = "green"
    return case


OPS = (
    Op(
        "create endpoint", ONLINE, "endpoint", "PUT", _new_endpoint,
        lambda c, say: c.target.create_endpoint(c.endpoint, progress=say),
    ),
    Op(
        "update endpoint", ONLINE, "endpoint", "PUT", _endpoint,
        lambda c, say: c.target.update_endpoint(c.endpoint, {"description": "new"}, progress=say),
    ),
    Op(
        "create deployment", ONLINE, "deployment", "PUT", _new_deployment,
        lambda c, say: c.target.create_deployment(
            c.deployment, MODEL, c.endpoint, {"instance_count": 2}, progress=say
        ),
        row="deployment",
    ),
    Op(
        "set traffic", ONLINE, "endpoint", "PUT", _deployment,
        lambda c, say: c.target.set_traffic(c.endpoint, {c.deployment: 100}, progress=say),
    ),
    Op(
        "delete deployment", ONLINE, "deployment", "DELETE", _deployment,
        lambda c, say: c.target.delete_deployment(c.deployment, c.endpoint, progress=say),
        row="deployment", delete=True,
    ),
    Op(
        "delete endpoint", ONLINE, "endpoint", "DELETE", _endpoint,
        lambda c, say: c.target.delete_endpoint(c.endpoint, progress=say),
        delete=True,
    ),
    Op(
        "get keys", ONLINE, "list_keys", "POST", _endpoint,
        lambda c, say: c.target.get_keys(c.endpoint), lro=False, row=None,
    ),
    Op(
        "get logs", ONLINE, "get_logs", "POST", _deployment,
        lambda c, say: c.target.get_logs(c.deployment, c.endpoint, 10), lro=False, row=None,
    ),
    Op(
        "batch create endpoint", BATCH, "batch_endpoint", "PUT", _new_batch_endpoint,
        lambda c, say: c.target.batch.create_endpoint(c.endpoint, progress=say),
    ),
    Op(
        "batch create deployment", BATCH, "batch_deployment", "PUT", _new_batch_deployment,
        lambda c, say: c.target.batch.create_deployment(
            c.deployment, c.endpoint, BATCH_MODEL, BatchSettings(), "cpu", progress=say
        ),
        row="deployment",
    ),
    Op(
        "batch job submit", BATCH, "batch_invoke", "POST", _batch_deployment,
        lambda c, say: c.target.batch.invoke(c.endpoint, DATA, deployment=c.deployment),
        lro=False, row=None,
    ),
    Op(
        "batch job status", BATCH, "job", "GET", _batch_job,
        lambda c, say: c.target.batch.job_status(c.job), lro=False, row=None,
    ),
)  # fmt: skip


# -- the failures --------------------------------------------------------------------------------


def _status(status: int, code: str, times: int = 1, **headers: str) -> Callable:
    def inject(fake: FakeAzureML, route: str, method: str) -> None:
        fake.fail(route, status, code, f"Injected {status} {code}", method, headers, times)

    return inject


def _raises(exc: type[BaseException], message: str, *, after: bool = False) -> Callable:
    def inject(fake: FakeAzureML, route: str, method: str) -> None:
        fake.fail(route, 0, method=method, message=message, times=99, raises=exc, after=after)

    return inject


def _malformed(fake: FakeAzureML, route: str, method: str) -> None:
    """A 200 whose body is cut short: the request was handled, its answer cannot be parsed.
    The cut body quotes every key of the workspace, so an error that echoes it leaks them."""
    keys = " ".join(v for pair in fake.keys.values() for v in pair.values())
    raw = ('{"properties": {"provisioningState": "Succeeded", "primaryKey": "' + keys).encode()
    fake.fail(route, 200, method=method, raw=raw, after=True)


def _operation_ends(code: str) -> Callable:
    def inject(fake: FakeAzureML, route: str, method: str) -> None:
        fake.fail_operation(code, f"Injected {code}: the deployment could not be provisioned")

    return inject


FOREVER = 99  # more than azure-core's 10 retries

FAULTS = (
    Fault("401", _status(401, "InvalidAuthenticationToken"), NOT_STARTED, AzureConnectionError),
    Fault("403", _status(403, "AuthorizationFailed"), NOT_STARTED, AzurePermissionError),
    Fault("404", _status(404, "ResourceNotFound"), NOT_STARTED, DeployStudioError),
    Fault("409", _status(409, "Conflict"), NOT_STARTED, AzureConflictError),
    Fault(
        "429 then success", _status(429, "TooManyRequests", 2, **{"Retry-After": "7"}),
        SUCCEEDS, None,
    ),
    Fault(
        "429 forever", _status(429, "TooManyRequests", FOREVER, **{"Retry-After": "7"}),
        NOT_STARTED, AzureThrottledError,
    ),
    Fault("500", _status(500, "InternalServerError", FOREVER), NOT_STARTED, AzureOperationError),
    Fault(
        "503", _status(503, "ServiceUnavailable", FOREVER, **{"Retry-After": "3"}),
        NOT_STARTED, AzureOperationError,
    ),
    Fault(
        "operation Failed", _operation_ends("DeploymentFailed"), ENDED, AzureOperationError,
        lro_only=True,
    ),
    Fault(
        "operation Canceled", _operation_ends("Canceled"), ENDED, AzureOperationCanceledError,
        lro_only=True,
    ),
    Fault(
        "connection refused",
        _raises(ServiceRequestError, "Failed to establish a new connection: [Errno 111]"),
        NOT_STARTED, AzureConnectionError,
    ),
    Fault(
        "timeout (answer lost)",
        _raises(ServiceResponseError, "Read timed out. (read timeout=300)", after=True),
        MAYBE, AzureConnectionError,
    ),
    Fault("malformed JSON", _malformed, MAYBE, AzureOperationError, may_succeed=True),
    Fault(
        "credential raises", lambda fake, route, method: None, NOT_STARTED,
        AzureConnectionError, refuses_sign_in=True,
    ),
    Fault(
        "poll 503 forever", _status(503, "ServiceUnavailable", FOREVER), MAYBE,
        AzureOperationError, lro_only=True, on_poll=True,
    ),
    Fault(
        "poll connection lost",
        _raises(ServiceRequestError, "Connection aborted: RemoteDisconnected"),
        MAYBE, AzureConnectionError, lro_only=True, on_poll=True,
    ),
)  # fmt: skip

# The long run adds these variants of the same failures.
LONG_FAULTS = (
    Fault(
        "ImageBuildFailure", _operation_ends("ImageBuildFailure"), ENDED, AzureOperationError,
        lro_only=True,
    ),
    Fault(
        "OutOfQuota", _operation_ends("OutOfQuota"), ENDED, AzureOperationError, lro_only=True
    ),
    # azure-core retries a POST's 429 only when Retry-After is there; Retry-After-Ms wins.
    Fault(
        "429 once (Retry-After-Ms)",
        _status(429, "TooManyRequests", 1, **{"Retry-After-Ms": "9", "Retry-After": "1"}),
        SUCCEEDS, None,
    ),
    Fault("502", _status(502, "BadGateway", FOREVER), NOT_STARTED, AzureOperationError),
    Fault("504", _status(504, "GatewayTimeout", FOREVER), NOT_STARTED, AzureOperationError),
    Fault(
        "poll 401", _status(401, "ExpiredAuthenticationToken"), MAYBE, AzureConnectionError,
        lro_only=True, on_poll=True,
    ),
    Fault(
        "poll malformed JSON", _malformed, MAYBE, AzureOperationError, lro_only=True,
        on_poll=True, may_succeed=True,
    ),
)  # fmt: skip

NOT_FOUND = (EndpointNotFoundError, DeploymentNotFoundError)
