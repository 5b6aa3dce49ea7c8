"""Azure ML batch endpoints of one workspace, over azure-ai-ml's MLClient.

A batch endpoint (`BatchEndpoint`) holds model batch deployments (`ModelBatchDeployment`, built
from our BatchSettings by batch_azure) that run on a compute cluster; invoking it starts a job
that scores the files of a datastore folder or a public URI and writes the predictions file as
its `score` output. Long operations take a `progress(str)` callback like AzureTarget's; every
SDK failure becomes a DeployStudioError (azure_errors.translate). Built by `AzureTarget.batch`,
its long operations are submitted through the workspace's AzureOperations (operations.py):
recorded in the deployment store with their continuation token so a restarted app resumes
watching them (AzureTarget.resume_pending) instead of sending them again.
"""

from __future__ import annotations

import re
import secrets
import shutil
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from deploystudio.config import Settings
from deploystudio.deployment.azure.errors import translate
from deploystudio.deployment.azure.model_reference import azure_model_name
from deploystudio.deployment.azure.operations import (
    AzureOperations,
    Progress,
    enum_text,
    quiet,
    wait,
)
from deploystudio.deployment.azure.output import sdk_output
from deploystudio.deployment.azure.records import BATCH, ENDPOINT_ROW
from deploystudio.deployment.batch.azure_yaml import batch_deployment
from deploystudio.deployment.batch.records import FINISHED_STATES, JobState
from deploystudio.deployment.batch.settings import BatchSettings
from deploystudio.deployment.names import validate_name
from deploystudio.errors import (
    AzureBatchInputError,
    AzureBatchJobStateError,
    BatchJobNotFoundError,
    UnsafePathError,
)

# Azure's job statuses (azure.ai.ml.constants.JobStatus) in our batch job states.
_JOB_STATES = {
    "notstarted": JobState.QUEUED,
    "queued": JobState.QUEUED,
    "preparing": JobState.QUEUED,
    "provisioning": JobState.QUEUED,
    "starting": JobState.QUEUED,
    "running": JobState.RUNNING,
    "finalizing": JobState.RUNNING,
    "cancelrequested": JobState.RUNNING,
    "completed": JobState.COMPLETED,
    "failed": JobState.FAILED,
    "notresponding": JobState.FAILED,
    "canceled": JobState.CANCELLED,
}
_AZURE_MODEL = re.compile(r"^azureml:(?P<name>[^:/@]+):(?P<version>[^:/@]+)$")
# Inputs Azure reads itself: a datastore path, a data asset, or a public URL.
_REMOTE_INPUT = re.compile(r"^(azureml:|https://)", re.IGNORECASE)
SCORE_OUTPUT = "score"


@dataclass(frozen=True)
class BatchEndpointInfo:
    name: str
    state: str
    scoring_uri: str | None
    default_deployment: str | None
    description: str


@dataclass(frozen=True)
class BatchDeploymentInfo:
    name: str
    endpoint_name: str
    state: str
    model: str | None
    compute: str | None
    instance_count: int | None


@dataclass(frozen=True)
class BatchJobStatus:
    name: str
    azure_status: str
    state: JobState
    created_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    error: str | None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES


def compute_name(compute: str) -> str:
    """The cluster's bare name. The SDK puts `compute` into the cluster's ARM id as given, so
    the `azureml:` prefix YAML files use would end up inside the id."""
    name = compute.strip()
    name = name[len("azureml:") :] if name.lower().startswith("azureml:") else name
    if not name or "/" in name:
        raise AzureBatchInputError(
            f"Compute {compute!r} is not a compute cluster name: give the name of an Azure ML "
            "compute cluster of the workspace, such as 'batch-cluster'."
        )
    return name


def input_entity(address: str, input_type: str | None = None) -> Any:
    """`Input(type=uri_folder|uri_file)` for a datastore path (`azureml://datastores/...`), a
    data asset (`azureml:NAME:VERSION`) or a public `https://` URL. A local path is refused:
    the SDK would upload it to the workspace's default datastore, which the studio does not do
    on its own."""
    from azure.ai.ml import Input
    from azure.ai.ml.constants import AssetTypes

    text = address.strip()
    if not _REMOTE_INPUT.match(text):
        if text and Path(text).expanduser().exists():
            raise AzureBatchInputError(
                f"{address!r} is a local path; a batch endpoint reads its input from Azure. "
                "Upload the folder to a datastore first (Azure ML studio > Data, or "
                "`az ml data create --path FOLDER --type uri_folder`), then give its "
                "azureml://datastores/NAME/paths/... address or azureml:DATA:VERSION."
            )
        raise AzureBatchInputError(
            f"{address!r} is not an input Azure can read: give a datastore path "
            "(azureml://datastores/NAME/paths/FOLDER/), a data asset (azureml:NAME:VERSION) or "
            "a public https:// URL."
        )
    if input_type is None:
        last = text.rstrip("/").rsplit("/", 1)[-1]
        is_file = not text.endswith("/") and "." in last and not text.startswith("azureml:")
        input_type = AssetTypes.URI_FILE if is_file else AssetTypes.URI_FOLDER
    if input_type not in (AssetTypes.URI_FILE, AssetTypes.URI_FOLDER):
        raise AzureBatchInputError(
            f"Input type {input_type!r} is not uri_file or uri_folder (batch endpoints read "
            "one file or a folder of files)."
        )
    return Input(type=input_type, path=text)


class AzureBatch:
    """Batch endpoints, deployments and jobs of the workspace `client` points at."""

    def __init__(
        self, client: Any, settings: Settings, operations: AzureOperations | None = None
    ) -> None:
        """`client`: an azure-ai-ml MLClient (AzureTarget.client); `operations`: the
        workspace's AzureOperations that record and resume long operations (None: they are
        only waited for, not recorded). No Azure call happens here."""
        self.client = client
        self.settings = settings
        self.operations = operations

    # -- endpoints ---------------------------------------------------------------------------

    def create_endpoint(
        self, name: str, description: str = "", *, progress: Progress | None = None
    ) -> BatchEndpointInfo:
        """Create (or update the description of) a batch endpoint; Microsoft Entra token auth,
        the only mode Azure offers for batch endpoints."""
        from azure.ai.ml.entities import BatchEndpoint

        validate_name(name, "endpoint")
        entity = BatchEndpoint(name=name, description=description or None)
        self._run(
            lambda: self.client.batch_endpoints.begin_create_or_update(entity),
            f"create batch endpoint {name!r}",
            progress,
            endpoint=name,
            operation="create",
        )
        return self.get_endpoint(name)

    def get_endpoint(self, name: str) -> BatchEndpointInfo:
        return _endpoint_info(self._endpoint_entity(name))

    def list_endpoints(self) -> list[BatchEndpointInfo]:
        try:
            entities = list(self.client.batch_endpoints.list())
        except Exception as exc:
            raise translate(exc, "list the workspace's batch endpoints", kind="batch") from exc
        return sorted((_endpoint_info(e) for e in entities), key=lambda e: e.name.lower())

    def delete_endpoint(self, name: str, *, progress: Progress | None = None) -> None:
        """Delete the endpoint and its deployments (a missing endpoint is already gone)."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self.client.batch_endpoints.get(name)
        except ResourceNotFoundError:
            if self.operations is not None:
                self.operations.batch.remove(name)
            return
        except Exception as exc:
            action = f"read batch endpoint {name!r}"
            raise translate(exc, action, endpoint=name, kind="batch") from exc
        self._run(
            lambda: self.client.batch_endpoints.begin_delete(name=name),
            f"delete batch endpoint {name!r}",
            progress,
            endpoint=name,
            operation="delete",
        )

    def set_default_deployment(
        self, endpoint: str, deployment: str, *, progress: Progress | None = None
    ) -> BatchEndpointInfo:
        """Route invocations that name no deployment to `deployment`."""
        names = [d.name for d in self.list_deployments(endpoint)]
        if deployment not in names:
            raise AzureBatchInputError(
                f"Batch endpoint {endpoint!r} has no deployment {deployment!r} "
                f"(it has: {', '.join(names) or 'none'}): create it first."
            )
        entity = self._endpoint_entity(endpoint)
        entity.defaults = {"deployment_name": deployment}
        self._run(
            lambda: self.client.batch_endpoints.begin_create_or_update(entity),
            f"make {deployment!r} the default deployment of batch endpoint {endpoint!r}",
            progress,
            endpoint=endpoint,
            operation="update",
        )
        return self.get_endpoint(endpoint)

    # -- deployments -------------------------------------------------------------------------

    def create_deployment(
        self,
        name: str,
        endpoint: str,
        model_uri: str,
        settings: BatchSettings,
        compute: str,
        *,
        instance_count: int = 1,
        make_default: bool = False,
        progress: Progress | None = None,
    ) -> BatchDeploymentInfo:
        """A model batch deployment of `model_uri` (`azureml:NAME:VERSION`, or the
        `models:/NAME/VERSION` registered in Azure under the same name) on the compute cluster
        `compute`, with `settings` as Azure's mini-batch, retry and output settings."""
        entity = batch_deployment(
            settings,
            _registry_uri(model_uri),
            endpoint,
            name,
            compute=compute_name(compute),
            instance_count=instance_count,
        )
        self._run(
            lambda: self.client.batch_deployments.begin_create_or_update(entity),
            f"create batch deployment {name!r} on endpoint {endpoint!r}",
            progress,
            endpoint=endpoint,
            deployment=name,
            operation="create",
            model_uri=model_uri,
            settings={
                "compute": compute_name(compute),
                "instance_count": instance_count,
                "batch_settings": asdict(settings),
            },
        )
        if make_default:
            self.set_default_deployment(endpoint, name, progress=progress)
        return self.get_deployment(name, endpoint)

    def get_deployment(self, name: str, endpoint: str) -> BatchDeploymentInfo:
        try:
            entity = self.client.batch_deployments.get(name, endpoint)
        except Exception as exc:
            raise translate(
                exc, f"read batch deployment {name!r}", endpoint=endpoint, deployment=name
            ) from exc
        return _deployment_info(entity)

    def list_deployments(self, endpoint: str) -> list[BatchDeploymentInfo]:
        try:
            entities = list(self.client.batch_deployments.list(endpoint))
        except Exception as exc:
            raise translate(
                exc,
                f"list the deployments of batch endpoint {endpoint!r}",
                endpoint=endpoint,
                kind="batch",
            ) from exc
        return sorted((_deployment_info(e) for e in entities), key=lambda d: d.name.lower())

    def delete_deployment(
        self, name: str, endpoint: str, *, progress: Progress | None = None
    ) -> None:
        self._run(
            lambda: self.client.batch_deployments.begin_delete(name=name, endpoint_name=endpoint),
            f"delete batch deployment {name!r} of endpoint {endpoint!r}",
            progress,
            endpoint=endpoint,
            deployment=name,
            operation="delete",
        )

    # -- jobs --------------------------------------------------------------------------------

    def invoke(
        self,
        endpoint: str,
        input_path_or_uri: str,
        deployment: str | None = None,
        *,
        input_type: str | None = None,
    ) -> str:
        """Start a scoring job on `input_path_or_uri` (see input_entity); returns the job name.
        Without `deployment`, the endpoint's default deployment scores it."""
        entity = input_entity(input_path_or_uri, input_type)
        if deployment is None:
            # azure-ai-ml 1.35 writes the deployment header into a class-level dict shared by
            # every invoke, so a call without one reuses the previous call's deployment: name
            # the endpoint's default explicitly.
            deployment = self.get_endpoint(endpoint).default_deployment
            if deployment is None:
                raise AzureBatchInputError(
                    f"Batch endpoint {endpoint!r} has no default deployment: name the "
                    "deployment to run, or make one the default first."
                )
        # The job's name is ours, chosen before sending: azure-ai-ml 1.35 sends the POST again
        # (up to 5 times) when an answer is lost, and a second job cannot take a name already
        # taken. So one submit starts at most one job, and that job can be found by its name.
        name = f"batchjob-{uuid.uuid4()}"
        try:
            job = self.client.batch_endpoints.invoke(
                endpoint_name=endpoint, deployment_name=deployment, input=entity, job_name=name
            )
        except Exception as exc:
            if self._job_exists(name):
                return name  # an earlier POST of this submit started it; its answer was lost
            raise translate(
                exc,
                f"start a job on batch endpoint {endpoint!r}",
                endpoint=endpoint,
                deployment=deployment,
                kind="batch",
            ) from exc
        return str(job.name)

    def _job_exists(self, name: str) -> bool:
        """Whether the workspace has job `name`; False when that cannot be told (the caller
        then reports its own error, which says to refresh before trying again)."""
        try:
            self.client.jobs.get(name)
        except Exception:
            return False
        return True

    def job_status(self, job_name: str) -> BatchJobStatus:
        """The job's status (from ARM) with its start, end and error (from run history)."""
        from azure.core.exceptions import ResourceNotFoundError

        action = f"read batch job {job_name!r}"
        try:
            job = self.client.jobs.get(job_name)
            # The ARM job resource has no start/end time or error; the SDK reads those from the
            # workspace's run history (jobs.stream prints them) and has no public getter.
            run = self.client.jobs._runs_operations.get_run(job_name)
        except ResourceNotFoundError as exc:
            raise BatchJobNotFoundError(
                f"The workspace has no job {job_name!r}: check its name (invoke returns it)."
            ) from exc
        except Exception as exc:
            raise translate(exc, action) from exc
        azure_status = enum_text(job.status) or enum_text(getattr(run, "status", None))
        error = getattr(getattr(run, "error", None), "error", None)
        context = getattr(job, "creation_context", None)
        return BatchJobStatus(
            name=job_name,
            azure_status=azure_status,
            state=_JOB_STATES.get(azure_status.lower(), JobState.QUEUED),
            created_at=getattr(context, "created_at", None),
            started_at=getattr(run, "start_time_utc", None),
            ended_at=getattr(run, "end_time_utc", None),
            error=f"{error.code}: {error.message}" if error is not None else None,
        )

    def download_predictions(self, job_name: str, into_folder: Path) -> list[Path]:
        """Download the job's `score` output (the predictions file) into a new folder inside
        `into_folder`, which must lie in the studio's data folder. Returns the files."""
        root = self.settings.home.resolve()
        target = Path(into_folder).expanduser().resolve()
        if target != root and root not in target.parents:
            raise UnsafePathError(
                f"Predictions are saved inside the studio's data folder ({root}); "
                f"{into_folder} is outside it. Choose a folder under it."
            )
        status = self.job_status(job_name)
        if status.state is not JobState.COMPLETED:
            reason = f" ({status.error})" if status.error else ""
            raise AzureBatchJobStateError(
                f"Job {job_name!r} is {status.azure_status}{reason}: predictions can be "
                "downloaded once it has Completed."
            )
        # A fresh folder per download: the SDK writes the output's files under it as named by
        # the datastore, so nothing outside it or from an earlier download is touched.
        folder = target / f"{job_name}-{secrets.token_hex(3)}"
        folder.mkdir(parents=True)
        from deploystudio.deployment.azure.output import sdk_output

        try:
            with sdk_output():
                self.client.jobs.download(
                    job_name, download_path=str(folder), output_name=SCORE_OUTPUT
                )
        except Exception as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise translate(exc, f"download the predictions of job {job_name!r}") from exc
        files = sorted(
            p for p in folder.rglob("*") if p.is_file() and folder in p.resolve().parents
        )
        if not files:
            shutil.rmtree(folder, ignore_errors=True)
            raise AzureBatchJobStateError(
                f"Job {job_name!r} completed without a {SCORE_OUTPUT!r} output to download: "
                "its deployment may use output_action 'summary_only', or every file failed "
                "(see the job's logs in Azure ML studio)."
            )
        return files

    # -- internals ---------------------------------------------------------------------------

    def _endpoint_entity(self, name: str) -> Any:
        try:
            return self.client.batch_endpoints.get(name)
        except Exception as exc:
            raise translate(
                exc, f"read batch endpoint {name!r}", endpoint=name, kind="batch"
            ) from exc

    def _run(
        self,
        begin: Callable[[], Any],
        action: str,
        progress: Progress | None,
        *,
        endpoint: str,
        deployment: str | None = None,
        operation: str,
        model_uri: str | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        if self.operations is not None:
            self.operations.submit(
                operation,
                endpoint,
                deployment or ENDPOINT_ROW,
                begin,
                action,
                progress,
                model_uri=model_uri,
                settings=settings,
                kind=BATCH,
            )
            return
        say = progress or quiet
        try:
            say(f"Sending: {action}")
            with sdk_output():
                wait(begin(), action, say)
        except Exception as exc:
            error = translate(exc, action, endpoint=endpoint, deployment=deployment, kind="batch")
            say(f"Failed: {error}")
            raise error from exc
        say(f"Done: {action}")


def _registry_uri(model_uri: str) -> str:
    # batch_azure's builder takes a registry version URI and names it `azureml:NAME:VERSION`
    # itself; an Azure reference is handed to it in that form.
    found = _AZURE_MODEL.match(model_uri.strip())
    if found:
        return f"models:/{found['name']}/{found['version']}"
    return model_uri


def _endpoint_info(entity: Any) -> BatchEndpointInfo:
    defaults = entity.defaults
    if isinstance(defaults, dict):
        default = defaults.get("deployment_name") or defaults.get("deploymentName")
    else:
        default = getattr(defaults, "deployment_name", None)
    return BatchEndpointInfo(
        name=entity.name,
        state=enum_text(entity.provisioning_state),
        scoring_uri=entity.scoring_uri,
        default_deployment=default or None,
        description=entity.description or "",
    )


def _deployment_info(entity: Any) -> BatchDeploymentInfo:
    compute = str(entity.compute or "").rstrip("/").rsplit("/", 1)[-1] or None
    resources = getattr(entity, "resources", None)
    return BatchDeploymentInfo(
        name=entity.name,
        endpoint_name=entity.endpoint_name,
        state=enum_text(entity.provisioning_state),
        model=azure_model_name(entity.model),
        compute=compute,
        instance_count=getattr(resources, "instance_count", None),
    )
