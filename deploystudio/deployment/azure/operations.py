"""Long Azure ML operations of one workspace, online and batch alike.

An operation is recorded as pending in the deployment store before its request is sent, keeps
the continuation token of the SDK's poller, and is waited for; its outcome is recorded (or the
record put back as it was when Azure refused or never got the request). After an app restart
`resume_pending` polls the stored operations instead of sending them again. AzureTarget and its
AzureBatch both submit through one AzureOperations, so they share records, waits and messages.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from deploystudio.deployment.azure import records as azure_records
from deploystudio.deployment.azure.errors import LOG_TAIL_LINES, never_started, translate
from deploystudio.deployment.azure.output import sdk_output
from deploystudio.deployment.azure.records import BATCH, ONLINE, AzureRecord, AzureRecords
from deploystudio.deployment.azure.workspace import ARM_SCOPE
from deploystudio.deployment.base import DeploymentState
from deploystudio.deployment.store import DeploymentStore
from deploystudio.errors import DeployStudioError

Progress = Callable[[str], None]
ARM_URL = "https://management.azure.com"
# Seconds between progress checks; the SDK's poller itself waits as Azure's Retry-After says.
WAIT_STEP_S = 2.0
RESUME_POLL_S = 10
_STATES = {
    "succeeded": DeploymentState.READY,
    "failed": DeploymentState.FAILED,
    "canceled": DeploymentState.FAILED,
    "creating": DeploymentState.STARTING,
    "updating": DeploymentState.STARTING,
    "provisioning": DeploymentState.STARTING,
    "scaling": DeploymentState.STARTING,
    "deleting": DeploymentState.STOPPING,
}


def quiet(message: str) -> None:
    """A progress callback that shows nothing."""


def enum_text(value: Any) -> str:
    """An SDK field that is an enum or a string, as its text ("" for None)."""
    return str(getattr(value, "value", value) or "")


def resource_state(provisioning: Any) -> DeploymentState:
    """A resource's provisioning state as ours (unknown ones are PENDING)."""
    return _STATES.get(enum_text(provisioning).lower(), DeploymentState.PENDING)


class AzureOperations:
    """Records, submits and resumes the long operations of one workspace."""

    def __init__(
        self,
        client: Any,
        store: DeploymentStore,
        workspace_arm_id: str,
        credential: Any,
        transport: Any = None,
    ) -> None:
        """`client`: the workspace's MLClient; `credential` and `transport` are the ones it
        was built with (resuming polls operation URLs with them)."""
        self.client = client
        self.online = AzureRecords(store, workspace_arm_id)
        self.batch = AzureRecords(store, workspace_arm_id, BATCH)
        self._credential = credential
        self._transport = transport

    def records(self, kind: str) -> AzureRecords:
        """The records of ONLINE or BATCH operations."""
        return self.batch if kind == BATCH else self.online

    def resume_pending(self, progress: Progress | None = None) -> list[AzureRecord]:
        """Finish watching operations a previous app run started: poll each stored operation
        (no request is sent again). Returns the records as they ended."""
        say = progress or quiet
        finished: list[AzureRecord] = []
        pending = self.online.pending() + self.batch.pending()
        for record in sorted(pending, key=lambda r: r.updated_at):
            records = self.records(record.kind)
            action = f"{record.operation or 'change'} {_described(record)}"
            say(f"Resuming: {action}")
            try:
                with sdk_output():
                    self._resume(record, action, say)
            except DeployStudioError as exc:
                records.finish(
                    record.endpoint_name, record.deployment_name, azure_records.FAILED, str(exc)
                )
            after = records.get(record.endpoint_name, record.deployment_name)
            finished.append(after or record)
        return finished

    def _resume(self, record: AzureRecord, action: str, say: Progress) -> None:
        from azure.core.polling import LROPoller
        from azure.mgmt.core.polling.arm_polling import ARMPolling

        records = self.records(record.kind)
        endpoint, deployment = record.endpoint_name, record.deployment_name
        if record.continuation_token is None:
            # The app stopped between writing the record and Azure's answer: whether the
            # request arrived is unknown, so look at the resource instead of guessing.
            self._settle_from_resource(record)
            return
        context = {"endpoint": endpoint, "deployment": deployment or None, "kind": record.kind}
        try:
            poller = LROPoller.from_continuation_token(
                ARMPolling(RESUME_POLL_S),
                record.continuation_token,
                client=self._pipeline(),
                deserialization_callback=lambda response: None,
            )
            wait(poller, action, say)
        except Exception as exc:
            error = translate(exc, action, log_tail=self._tail(record), **context)
            records.finish(endpoint, deployment, azure_records.FAILED, str(error))
            say(f"Failed: {error}")
            return
        self._succeeded(record.operation, endpoint, deployment, records)
        say(f"Finished: {action}")

    def _read_resource(self, record: AzureRecord) -> Any:
        endpoint, deployment = record.endpoint_name, record.deployment_name
        if record.kind == BATCH:
            if deployment:
                return self.client.batch_deployments.get(deployment, endpoint)
            return self.client.batch_endpoints.get(endpoint)
        if deployment:
            return self.client.online_deployments.get(deployment, endpoint)
        return self.client.online_endpoints.get(endpoint)

    def _settle_from_resource(self, record: AzureRecord) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        records = self.records(record.kind)
        endpoint, deployment = record.endpoint_name, record.deployment_name
        try:
            entity = self._read_resource(record)
        except ResourceNotFoundError:
            if record.operation == "delete":
                records.remove(endpoint, deployment or None)
            else:
                records.finish(
                    endpoint,
                    deployment,
                    azure_records.FAILED,
                    f"The app stopped before Azure confirmed the {record.operation}: nothing "
                    "was created. Submit it again.",
                )
            return
        state = resource_state(entity.provisioning_state)
        if state is DeploymentState.READY:
            self._succeeded(record.operation, endpoint, deployment, records)
        elif state is DeploymentState.FAILED:
            records.finish(
                endpoint, deployment, azure_records.FAILED, "Azure reports the operation failed."
            )
        # Still running: the row stays pending and the next resume looks again.

    def submit(
        self,
        operation: str,
        endpoint: str,
        deployment: str,
        begin: Callable[[], Any],
        action: str,
        progress: Progress | None,
        *,
        model_uri: str | None = None,
        bundle: str | None = None,
        settings: dict[str, Any] | None = None,
        instance: str | None = None,
        kind: str = ONLINE,
    ) -> None:
        """Record pending, send the request, keep its continuation token, wait; record the
        outcome. Failures are recorded and raised as DeployStudioErrors. `kind` (ONLINE or
        BATCH) says which records (and which error wording) the operation belongs to."""
        say = progress or quiet
        records = self.records(kind)
        before = records.get(endpoint, deployment)
        records.begin(
            endpoint, deployment, operation, model_uri=model_uri, bundle=bundle, settings=settings
        )
        context = {
            "endpoint": endpoint,
            "deployment": deployment or None,
            "instance": instance,
            "kind": kind,
        }
        poller = None
        try:
            say(f"Sending: {action}")
            with sdk_output():
                poller = begin()
                records.set_token(endpoint, deployment, continuation_token(poller))
                wait(poller, action, say)
        except Exception as exc:
            record = records.get(endpoint, deployment)
            error = translate(
                exc, action, log_tail=self._tail(record) if deployment else None, **context
            )
            if poller is None and never_started(exc):
                # Azure refused the request or never got it: nothing runs there, so the store
                # keeps what it had (no row is left for a resource that was never created).
                records.restore(endpoint, deployment, before)
            else:
                log_tail = getattr(error, "log_tail", None)
                records.finish(endpoint, deployment, azure_records.FAILED, str(error), log_tail)
            say(f"Failed: {error}")
            raise error from exc
        self._succeeded(operation, endpoint, deployment, records)
        say(f"Done: {action}")

    def _succeeded(
        self, operation: str | None, endpoint: str, deployment: str, records: AzureRecords
    ) -> None:
        if operation == "delete":
            records.remove(endpoint, deployment or None)
        else:
            records.finish(endpoint, deployment, azure_records.READY)

    def _tail(self, record: AzureRecord | None) -> Callable[[], str | None] | None:
        # Batch deployments have no server log: their jobs have logs instead.
        if record is None or not record.deployment_name or record.kind == BATCH:
            return None
        return lambda: self.client.online_deployments.get_logs(
            record.deployment_name, record.endpoint_name, LOG_TAIL_LINES
        )

    def _pipeline(self) -> Any:
        """An azure-core pipeline for polling a stored operation URL, with the same credential
        and transport as the MLClient (MLClient has no public way to resume an operation)."""
        from azure.core import PipelineClient
        from azure.core.pipeline import policies
        from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy

        return PipelineClient(
            base_url=ARM_URL,
            policies=[
                policies.HeadersPolicy(),
                policies.UserAgentPolicy("deploystudio"),
                policies.RetryPolicy(),
                ARMChallengeAuthenticationPolicy(self._credential, ARM_SCOPE),
            ],
            transport=self._transport,
        )


def _described(record: AzureRecord) -> str:
    """`ep/dep` for online resources, `batch ep/dep` for batch ones."""
    return f"batch {record.target}" if record.kind == BATCH else record.target


def continuation_token(poller: Any) -> str | None:
    """The poller's state to resume it from after a restart (None: nothing to resume)."""
    try:
        return poller.continuation_token()
    except Exception:  # a poller without one (already done): nothing to resume later
        return None


def wait(poller: Any, action: str, progress: Progress) -> Any:
    """Wait for the SDK's poller (it polls on its own thread, honouring Retry-After), telling
    `progress` each status it goes through and how long it has been running."""
    started = time.monotonic()
    last = None
    while not poller.done():
        status = poller.status()
        if status != last:
            progress(f"{action}: {status} ({time.monotonic() - started:.0f} s)")
            last = status
        poller.wait(WAIT_STEP_S)
    result = poller.result()  # raises the operation's failure
    progress(f"{action}: {poller.status()} ({time.monotonic() - started:.1f} s)")
    return result
