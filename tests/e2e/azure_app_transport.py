"""The fake Azure ML workspace a browser test's app server talks to (loaded in that server's
process through deploystudio/deployment/azure/fake_transport_hook.py, see there why).

`connection(workspace)` answers the app's AzureTarget with a StaticToken and one FakeAzureML per
server process, seeded on first use through the real azure-ai-ml (an AzureTarget on the fake):
online endpoint `iris-ep` (key auth) with `blue` (80%) and `green` (20%), and a log for green.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any

from deploystudio.config import load_settings
from deploystudio.deployment.store import DeploymentStore
from tests.azure_fake import FakeAzureML, StaticToken, fake_target

ENDPOINT = "iris-ep"
MODEL = "azureml:iris-classifier:2"
GREEN_LOG = "green started\nlistening on 31311\n"
# The workspace the test's environment names (AZURE_SUBSCRIPTION_ID...): the picker offers it.
WORKSPACE_ENV = {
    "AZURE_SUBSCRIPTION_ID": "22222222-3333-4444-5555-666666666666",
    "AZURE_RESOURCE_GROUP": "rg-e2e",
    "AZUREML_WORKSPACE_NAME": "ws-e2e",
}

_lock = threading.Lock()
_fake: FakeAzureML | None = None


def connection(workspace: Any) -> tuple[Any, Any]:
    global _fake
    with _lock:
        if _fake is None:
            _fake = _seeded()
    return StaticToken(), _fake


def _seeded() -> FakeAzureML:
    fake = FakeAzureML(
        subscription_id=WORKSPACE_ENV["AZURE_SUBSCRIPTION_ID"],
        resource_group=WORKSPACE_ENV["AZURE_RESOURCE_GROUP"],
        workspace_name=WORKSPACE_ENV["AZUREML_WORKSPACE_NAME"],
        # Long-running operations end at the first poll, without the SDK's waits.
        time_scale=0.0,
    )
    seed_store = DeploymentStore(Path(tempfile.mkdtemp(prefix="azure-seed-")) / "seed.db")
    target = fake_target(fake, load_settings(), seed_store)
    target.create_endpoint(ENDPOINT, {"auth_mode": "key"})
    for name in ("blue", "green"):
        target.create_deployment(name, MODEL, ENDPOINT, {"instance_type": "F2"})
    target.set_traffic(ENDPOINT, {"blue": 80, "green": 20})
    fake.logs[(ENDPOINT, "green")] = GREEN_LOG
    return fake
