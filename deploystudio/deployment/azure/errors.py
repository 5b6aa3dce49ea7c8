"""Azure SDK exceptions -> DeployStudioError subclasses whose message says what to do.

azure-core raises one family of exceptions (HttpResponseError and its subclasses, with Azure's
ARM error code in `exc.error.code`), and a long-running operation that ends Failed or Canceled
surfaces as an HttpResponseError carrying the operation's error body. azure-ai-ml adds its own
ValidationException for values it refuses before sending anything. One function maps them all,
so every AzureTarget method reports the same failure the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from deploystudio.deployment.azure.workspace import SIGN_IN_HELP
from deploystudio.errors import (
    AzureConflictError,
    AzureConnectionError,
    AzureImageBuildError,
    AzureNotReadyError,
    AzureOperationCanceledError,
    AzureOperationError,
    AzurePermissionError,
    AzureQuotaError,
    AzureSpecError,
    AzureThrottledError,
    DeploymentNotFoundError,
    DeployStudioError,
    EndpointNotFoundError,
)

# Lines of the deployment's container log quoted in a ResourceNotReady message.
LOG_TAIL_LINES = 30
ROLE_HELP = (
    "Ask a workspace owner for the 'AzureML Data Scientist' role on the workspace (or sign in "
    "as an identity that has it)."
)


def error_code(exc: Any) -> str | None:
    """Azure's error code (ImageBuildFailure, OutOfQuota, ...) of an azure-core error."""
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    return str(code) if code else None


def _azure_message(exc: Any) -> str:
    error = getattr(exc, "error", None)
    message = getattr(error, "message", None) or getattr(exc, "message", None) or str(exc)
    return str(message).splitlines()[0].strip()


def _was_canceled(exc: Any) -> bool:
    # ARM's "Canceled" terminal state has no error body: azure-core reports the poll response
    # ({"status": "Canceled"}) as an invalid status, so read the status back from it.
    response = getattr(exc, "response", None)
    if response is None:
        return False
    try:
        body = json.loads(response.text() or "{}")
    except (ValueError, TypeError, AttributeError):
        return False
    return isinstance(body, dict) and str(body.get("status", "")).lower() in (
        "canceled",
        "cancelled",
    )


def translate(
    exc: BaseException,
    action: str,
    *,
    endpoint: str | None = None,
    deployment: str | None = None,
    log_tail: Callable[[], str | None] | None = None,
    instance: str | None = None,
    kind: str = "online",
) -> DeployStudioError:
    """The DeployStudioError for `exc`, raised while doing `action` ("create deployment 'blue'").

    `log_tail` is called (once, and only for ResourceNotReady) to quote the container log;
    `instance` ("2 x Standard_DS3_v2") names what an OutOfQuota was about; `kind` ("online",
    "batch") which endpoints a not-found message talks about.
    """
    from azure.ai.ml.exceptions import ValidationException
    from azure.core.exceptions import (
        ClientAuthenticationError,
        DecodeError,
        HttpResponseError,
        ResourceExistsError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )

    from deploystudio.deployment.azure.output import redact

    if isinstance(exc, DeployStudioError):
        return exc
    if isinstance(exc, ValidationException):
        return AzureSpecError(f"azure-ai-ml refused to {action}: {exc.message}")
    if isinstance(exc, ServiceRequestError):
        # A transport's message may quote the URL, and a storage URL its SAS signature.
        return AzureConnectionError(
            f"Azure could not be reached to {action} ({redact(str(exc.message))}). Check the "
            "network or proxy, then try again."
        )
    if isinstance(exc, ServiceResponseError):
        return AzureConnectionError(
            f"The request to {action} was sent, but Azure's answer never arrived "
            f"({redact(str(exc.message))}). Azure may have started it: refresh to see its state "
            "before trying again, and check the network or proxy if it happens again."
        )
    if _gave_up_connecting(exc):
        return AzureConnectionError(
            f"Azure could not be reached to {action}: azure-ai-ml tried 5 times. If only the "
            "answers were lost, Azure may have done it anyway (a batch job started): refresh to "
            "see, then try again; check the network or proxy if it happens again."
        )
    if isinstance(exc, DecodeError | json.JSONDecodeError):
        # Neither the body nor the parser's message is quoted: a cut-short answer (listKeys)
        # may hold keys.
        return AzureOperationError(
            f"Azure's answer to the request to {action} could not be read (cut short, or not "
            "JSON), so whether Azure did it is unknown. Refresh to see its state, then try "
            "again if it is not done."
        )
    code = error_code(exc)
    detail = _azure_message(exc)
    if isinstance(exc, ClientAuthenticationError) and getattr(exc, "status_code", None) is None:
        # Raised by the credential itself: no token was obtained, Azure was never asked.
        return AzureConnectionError(
            f"No credential could sign in to Azure to {action}: {detail}. {SIGN_IN_HELP}"
        )
    if isinstance(exc, ClientAuthenticationError) or getattr(exc, "status_code", None) == 401:
        return AzureConnectionError(
            f"Azure refused the sign-in (401) while trying to {action}: {detail}. {SIGN_IN_HELP}"
        )
    status = getattr(exc, "status_code", None)
    if status == 403:
        return AzurePermissionError(
            f"Signed in, but not allowed to {action} (403 {code or 'Forbidden'}): {detail}. "
            f"{ROLE_HELP}"
        )
    if isinstance(exc, ResourceNotFoundError) or status == 404:
        if deployment is not None:
            return DeploymentNotFoundError(
                f"Endpoint {endpoint!r} has no deployment {deployment!r} in the Azure workspace "
                f"({detail}). Refresh the list of deployments."
            )
        return EndpointNotFoundError(
            f"There is no {kind} endpoint {endpoint!r} in the Azure workspace ({detail}). "
            "Refresh the list of endpoints, or create it first."
        )
    if isinstance(exc, ResourceExistsError) or status == 409:
        return AzureConflictError(
            f"Azure refused to {action} (409 {code or 'Conflict'}): {detail}. Another operation "
            f"on endpoint {endpoint!r} is still in progress; wait for it to finish (its state is "
            "shown on the endpoint), then try again."
        )
    if status == 429:
        return AzureThrottledError(
            # azure-core retries a 429 only where it may (not a POST without Retry-After), so
            # this does not claim that it did.
            f"Azure is throttling requests (429) and refused to {action}: {detail}. Wait a "
            "minute, then try again."
        )
    if _was_canceled(exc) or (code or "").lower() in ("canceled", "operationcanceled"):
        return AzureOperationCanceledError(
            f"The operation to {action} was canceled before it finished (by another request or "
            "in the Azure portal). Nothing more is running; start it again if it is still needed."
        )
    if code == "ImageBuildFailure":
        return AzureImageBuildError(
            f"Azure could not build the environment image to {action}: {detail}. Open the "
            "image build log (Azure ML studio > the deployment > Logs, or the build log link in "
            "Azure's message), fix the conda file or base image of the scoring bundle, then try "
            "again."
        )
    if code in ("OutOfQuota", "QuotaExceeded", "InsufficientQuota"):
        what = f" for {instance}" if instance else ""
        return AzureQuotaError(
            f"The subscription has no quota left{what} to {action}: {detail}. Ask for more "
            "quota for that VM family (Azure portal > Quotas > Machine learning), or choose a "
            "smaller instance type or fewer instances."
        )
    if code == "ResourceNotReady":
        tail = _safe_tail(log_tail)
        quoted = f"\nLast lines of the container log:\n{tail}" if tail else ""
        error = AzureNotReadyError(
            f"The deployment did not become ready to {action}: {detail}. The scoring container "
            "failed to start or to answer its readiness probe: check init() in the scoring "
            "script and the model's dependencies, or raise the readiness probe's initial delay."
            + quoted
        )
        error.log_tail = tail
        return error
    if isinstance(exc, HttpResponseError):
        shown = f"{status} {code}" if code else f"{status}"
        return AzureOperationError(
            f"Azure refused to {action} ({shown}): {detail}. Fix what Azure names, or try "
            "again later if it is a service error."
        )
    return AzureOperationError(f"Could not {action}: {type(exc).__name__}: {exc}")


def _gave_up_connecting(exc: BaseException) -> bool:
    # azure-ai-ml's batch invoke retries connection errors itself, then raises a bare
    # MlException with this text and no cause: its message is all there is to go by.
    from azure.ai.ml.exceptions import MlException

    return isinstance(exc, MlException) and str(exc.message).startswith("Max retry attempts")


def never_started(exc: BaseException) -> bool:
    """Whether a failed request certainly started nothing in Azure: it was never sent (no
    token, no connection, refused by azure-ai-ml) or Azure answered it with an error status.
    A lost or unreadable answer may hide an operation Azure did start."""
    from azure.ai.ml.exceptions import ValidationException
    from azure.core.exceptions import (
        ClientAuthenticationError,
        DecodeError,
        HttpResponseError,
        ServiceRequestError,
    )

    if isinstance(exc, DecodeError):
        return False
    if isinstance(exc, ServiceRequestError | ValidationException | DeployStudioError):
        return True
    status = getattr(exc, "status_code", None)
    if isinstance(exc, ClientAuthenticationError) and status is None:
        return True  # the credential gave no token: nothing was sent
    return isinstance(exc, HttpResponseError) and status is not None and status >= 400


def _safe_tail(log_tail: Callable[[], str | None] | None) -> str | None:
    if log_tail is None:
        return None
    try:
        return log_tail()
    except Exception:  # a failure while quoting the log must not hide the real error
        return None


@contextmanager
def azure_errors(action: str, **context: Any) -> Iterator[None]:
    """Run a block of SDK calls; re-raise any Azure failure as its DeployStudioError."""
    from azure.core.exceptions import AzureError

    try:
        yield
    except AzureError as exc:  # ValidationException is an AzureError too (MlException)
        raise translate(exc, action, **context) from exc
