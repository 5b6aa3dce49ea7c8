"""The Azure page's "Batch endpoint" tab through AppTest: YAML export from the batch settings
form, and "Deploy batch endpoint" reaching AzureBatch through the operation runner (offline,
so it must fail to sign in and say so). The batch operations against the fake ARM transport
are tested at the domain level (tests/test_azure_batch.py)."""

from __future__ import annotations

import pytest
import yaml

from components import services
from tests.page_support import fresh_caches, rerun  # noqa: F401 (fixture)
from tests.test_azure_page import (  # noqa: F401 (fixtures)
    home,
    offline_azure,
    open_page,
    page_settings,
)


@pytest.mark.usefixtures("page_settings", "offline_azure")
def test_batch_tab_exports_yaml_from_the_settings_and_deploys_through_the_runner() -> None:
    at = open_page({"model": "iris-classifier", "version": "1"})
    at.text_input(key="azure_batch_endpoint").set_value("iris-nightly")
    at.text_input(key="azure_batch_compute").set_value("cpu-cluster")
    at.number_input(key="batch_mini_batch_size").set_value(7)
    at.selectbox(key="batch_output_action").set_value("summary_only")
    at.button(key="azure_batch_export").click()
    rerun(at)
    assert not at.error, [e.value for e in at.error]
    specs = [yaml.safe_load(c.value) for c in at.code if "$schema" in c.value]
    endpoint = next(s for s in specs if "batchEndpoint" in s["$schema"])
    deployment = next(s for s in specs if "modelBatchDeployment" in s["$schema"])
    assert endpoint["name"] == "iris-nightly"
    assert deployment["endpoint_name"] == "iris-nightly"
    assert deployment["model"] == "azureml:iris-classifier:1"
    assert deployment["compute"] == "azureml:cpu-cluster"
    assert deployment["settings"]["mini_batch_size"] == 7
    assert deployment["settings"]["output_action"] == "summary_only"
    keys = {b.key for b in at.get("download_button")}
    assert {"azure_batch_endpoint_yml", "azure_batch_deployment_yml"} <= keys

    at.button(key="azure_batch_submit").click()
    rerun(at)
    operation_id = at.session_state["azure_batch_operation"]
    operation = services.local_endpoints().operations.wait(operation_id, 60)
    assert operation.done and operation.error_type == "AzureConnectionError", operation
    assert operation.subject == "Azure batch endpoint iris-nightly"
    assert "create batch endpoint 'iris-nightly'" in operation.error
    rerun(at)
    assert any("No credential could sign in" in e.value for e in at.error)
