"""Azure ML batch endpoints (azure_batch.AzureBatch) over the real azure-ai-ml and the fake ARM
transport (tests/azure_fake.py): only the network is fake."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploystudio.config import Settings
from deploystudio.deployment.azure.batch import AzureBatch
from deploystudio.deployment.batch.records import JobState
from deploystudio.deployment.batch.settings import BatchSettings, OutputAction
from deploystudio.deployment.store import DeploymentStore
from deploystudio.errors import (
    AzureBatchInputError,
    AzureBatchJobStateError,
    AzureConflictError,
    AzurePermissionError,
    AzureQuotaError,
    BatchJobNotFoundError,
    EndpointNotFoundError,
    UnsafePathError,
)
from tests.azure_fake import FakeAzureML, fake_target

DATA = "azureml://datastores/workspaceblobstore/paths/diabetes/inputs/"
SETTINGS = BatchSettings(
    mini_batch_size=5,
    max_concurrency_per_instance=2,
    output_action=OutputAction.APPEND_ROW,
    output_file_name="scores.csv",
    max_retries=4,
    timeout=120,
    error_threshold=10,
    logging_level="warning",
)


@pytest.fixture
def fake() -> FakeAzureML:
    return FakeAzureML()


@pytest.fixture
def batch(fake: FakeAzureML, settings: Settings, tmp_path: Path) -> AzureBatch:
    store = DeploymentStore(tmp_path / "deployments.db", actor="tester")
    return fake_target(fake, settings, store).batch


@pytest.fixture
def deployed(batch: AzureBatch) -> AzureBatch:
    batch.create_endpoint("diabetes-batch", "Nightly scoring")
    batch.create_deployment(
        "blue",
        "diabetes-batch",
        "azureml:diabetes-regressor:1",
        SETTINGS,
        "azureml:cpu-cluster",
        instance_count=2,
        make_default=True,
    )
    return batch


def test_endpoint_and_deployment_put_bodies(batch: AzureBatch, fake: FakeAzureML) -> None:
    messages: list[str] = []
    endpoint = batch.create_endpoint("diabetes-batch", "Nightly scoring", progress=messages.append)
    body = fake.of_route("batch_endpoint", "PUT")[0].body
    assert body["properties"]["authMode"].lower() == "aadtoken"  # Azure's only mode for batch
    assert body["properties"]["description"] == "Nightly scoring"
    assert endpoint.state == "Succeeded" and endpoint.scoring_uri.endswith("/jobs")
    assert messages[0].startswith("Sending") and messages[-1].startswith("Done"), messages

    deployment = batch.create_deployment(
        "blue",
        "diabetes-batch",
        "azureml:diabetes-regressor:1",
        SETTINGS,
        "azureml:cpu-cluster",
        instance_count=2,
    )
    props = fake.of_route("batch_deployment", "PUT")[0].body["properties"]
    assert props["model"]["assetId"].endswith("/models/diabetes-regressor/versions/1")
    # The bare cluster name: the SDK would keep an "azureml:" prefix inside the ARM id.
    assert props["compute"].endswith("/computes/cpu-cluster")
    assert props["resources"]["instanceCount"] == 2
    assert props["miniBatchSize"] == 5
    assert props["maxConcurrencyPerInstance"] == 2
    assert props["outputAction"] == "AppendRow"
    assert props["outputFileName"] == "scores.csv"
    assert props["retrySettings"] == {"maxRetries": 4, "timeout": "PT2M"}
    assert props["errorThreshold"] == 10
    assert props["loggingLevel"] == "warning"
    assert deployment.model == "azureml:diabetes-regressor:1"
    assert deployment.compute == "cpu-cluster" and deployment.state == "Succeeded"
    assert [d.name for d in batch.list_deployments("diabetes-batch")] == ["blue"]
    assert batch.get_endpoint("diabetes-batch").default_deployment is None

    endpoint = batch.set_default_deployment("diabetes-batch", "blue")
    assert endpoint.default_deployment == "blue"
    last = fake.of_route("batch_endpoint", "PUT")[-1].body["properties"]
    assert last["defaults"] == {"deploymentName": "blue"}
    with pytest.raises(AzureBatchInputError, match="no deployment 'green'"):
        batch.set_default_deployment("diabetes-batch", "green")


def test_invoke_sends_input_and_job_status_follows_the_job(
    deployed: AzureBatch, fake: FakeAzureML
) -> None:
    job = deployed.invoke("diabetes-batch", DATA, deployment="blue")
    post = fake.of_route("batch_invoke", "POST")[-1]
    assert post.host == "diabetes-batch.westeurope.inference.ml.azure.com"
    assert {k.lower(): v for k, v in post.headers.items()}["azureml-model-deployment"] == "blue"
    assert "authorization" not in {k.lower() for k in post.headers}  # never recorded
    folder = post.body["properties"]["inputData"]["UriFolder"]
    assert folder["uri"] == DATA and folder["jobInputType"] == "UriFolder"
    assert job in fake.jobs

    status = deployed.job_status(job)
    assert status.azure_status == "NotStarted" and status.state is JobState.QUEUED
    assert status.started_at is None and not status.finished

    fake.set_job_status(job, "Running", ended=False)
    status = deployed.job_status(job)
    assert status.state is JobState.RUNNING and status.started_at is not None
    assert status.ended_at is None

    fake.set_job_status(job, "Completed")
    status = deployed.job_status(job)
    assert status.state is JobState.COMPLETED and status.finished
    assert status.ended_at > status.started_at and status.error is None

    # The default deployment (blue) scores when none is named, even right after a call that
    # named another one (the SDK would otherwise resend that one's header).
    deployed.create_deployment(
        "green", "diabetes-batch", "azureml:diabetes-regressor:2", SETTINGS, "cpu-cluster"
    )
    deployed.invoke("diabetes-batch", DATA, deployment="green")
    other = deployed.invoke("diabetes-batch", "https://example.org/data/diabetes.csv")
    post = fake.of_route("batch_invoke", "POST")[-1]
    assert {k.lower(): v for k, v in post.headers.items()}["azureml-model-deployment"] == "blue"
    assert post.body["properties"]["inputData"]["UriFile"]["uri"].endswith("diabetes.csv")
    fake.set_job_status(other, "Failed", {"code": "UserError", "message": "No rows to score"})
    failed = deployed.job_status(other)
    assert failed.state is JobState.FAILED
    assert failed.error == "UserError: No rows to score"


def test_local_and_unknown_inputs_are_refused_before_sending(
    deployed: AzureBatch, fake: FakeAzureML, tmp_path: Path
) -> None:
    before = len(fake.requests)
    with pytest.raises(AzureBatchInputError, match="Upload the folder to a datastore first"):
        deployed.invoke("diabetes-batch", str(tmp_path))
    with pytest.raises(AzureBatchInputError, match="not an input Azure can read"):
        deployed.invoke("diabetes-batch", "s3://bucket/data/")
    with pytest.raises(AzureBatchInputError, match="uri_file or uri_folder"):
        deployed.invoke("diabetes-batch", DATA, input_type="mltable")
    assert len(fake.requests) == before
    deployed.create_endpoint("empty-batch")
    with pytest.raises(AzureBatchInputError, match="no default deployment"):
        deployed.invoke("empty-batch", DATA)
    assert not fake.of_route("batch_invoke")


def test_injected_errors_are_translated(batch: AzureBatch, fake: FakeAzureML) -> None:
    fake.fail("batch_endpoint", 403, "AuthorizationFailed", "no write permission", method="PUT")
    with pytest.raises(AzurePermissionError, match="create batch endpoint 'diabetes-batch'"):
        batch.create_endpoint("diabetes-batch")
    with pytest.raises(EndpointNotFoundError, match="no batch endpoint 'missing'"):
        batch.get_endpoint("missing")

    batch.create_endpoint("diabetes-batch")
    fake.fail_operation("OutOfQuota", "Not enough cores for STANDARD_DS3_V2")
    with pytest.raises(AzureQuotaError, match="no quota left"):
        batch.create_deployment(
            "blue", "diabetes-batch", "azureml:diabetes-regressor:1", SETTINGS, "cpu-cluster"
        )
    fake.fail("batch_deployment", 409, "Conflict", "operation in progress", method="PUT")
    with pytest.raises(AzureConflictError, match="409"):
        batch.create_deployment(
            "blue", "diabetes-batch", "azureml:diabetes-regressor:1", SETTINGS, "cpu-cluster"
        )
    with pytest.raises(AzureBatchInputError, match="compute cluster name"):
        batch.create_deployment(
            "blue", "diabetes-batch", "azureml:diabetes-regressor:1", SETTINGS, "a/b"
        )
    with pytest.raises(BatchJobNotFoundError, match="no job 'nope'"):
        batch.job_status("nope")


def test_download_waits_for_completion_and_stays_in_the_data_folder(
    deployed: AzureBatch, fake: FakeAzureML, settings: Settings, tmp_path: Path
) -> None:
    job = deployed.invoke("diabetes-batch", DATA)
    with pytest.raises(UnsafePathError, match="outside"):
        deployed.download_predictions(job, tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists()

    into = settings.home / "azure-batch-test"
    fake.set_job_status(job, "Running", ended=False)
    with pytest.raises(AzureBatchJobStateError, match="is Running"):
        deployed.download_predictions(job, into)

    # Completed: the SDK asks run history for the scoring child run's `score` output. The
    # fake lists no child (datastore blobs are beyond it), so there is nothing to download.
    fake.set_job_status(job, "Completed")
    with pytest.raises(AzureBatchJobStateError, match="without a 'score' output"):
        deployed.download_predictions(job, into)
    assert fake.of_route("run_children", "GET"), "the SDK's download did not reach run history"
    assert list(into.iterdir()) == []  # the empty download folder was removed


def test_delete_endpoint(deployed: AzureBatch, fake: FakeAzureML) -> None:
    deployed.delete_endpoint("diabetes-batch")
    assert fake.batch_endpoints == {} and fake.batch_deployments == {}
    assert deployed.list_endpoints() == []
    deployed.delete_endpoint("diabetes-batch")  # already gone: nothing to do
