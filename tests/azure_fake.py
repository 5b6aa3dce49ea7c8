"""A fake Azure Resource Manager for azure-ai-ml: the only fake in the Azure tests.

`FakeAzureML` is an azure-core `HttpTransport`: `MLClient(..., transport=FakeAzureML())` makes the
real SDK build and send its real requests, which this class answers from a small in-memory
workspace (online endpoints and deployments with PUT/GET/DELETE/list, long-running operations
polled through `Azure-AsyncOperation`, listKeys/regenerateKeys, getLogs) and records.
Errors on demand: `fail(...)` answers the next matching request with a status and ARM error
body (401/403/409/429 with Retry-After, ...); `fail_operation(...)` makes the next long-running
operation end `Failed` with an ARM error code (ImageBuildFailure, OutOfQuota, ...) or `Canceled`.

Uploads: the workspace has a default blob datastore (`workspaceblobstore`) whose `listSecrets`
hands out a SAS token, asset versions (models, codes, environments) are PUT/GET generically, and
the storage account's blob requests (HEAD properties, PUT blob, PUT metadata) are served from
`blobs`. azure-ai-ml builds its BlobServiceClient without the MLClient's transport, so
`serve_storage(monkeypatch)` hands this transport to that one constructor (the SDK's upload code
runs for real; only where its requests go changes).
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from azure.core.credentials import AccessToken
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest._http_response_impl import HttpResponseImpl
from azure.core.utils import case_insensitive_dict

ARM = "https://management.azure.com"
_WS = (
    r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)"
)
_ASSET = r"/(?P<kind>models|codes|environments|data)/(?P<asset>[^/]+)"
_ROUTES = [
    ("workspace", re.compile(_WS + r"$")),
    ("endpoints", re.compile(_WS + r"/onlineEndpoints$")),
    ("endpoint", re.compile(_WS + r"/onlineEndpoints/(?P<ep>[^/]+)$")),
    ("list_keys", re.compile(_WS + r"/onlineEndpoints/(?P<ep>[^/]+)/listKeys$")),
    ("regenerate_keys", re.compile(_WS + r"/onlineEndpoints/(?P<ep>[^/]+)/regenerateKeys$")),
    ("deployments", re.compile(_WS + r"/onlineEndpoints/(?P<ep>[^/]+)/deployments$")),
    ("deployment", re.compile(_WS + r"/onlineEndpoints/(?P<ep>[^/]+)/deployments/(?P<dep>[^/]+)$")),
    (
        "get_logs",
        re.compile(_WS + r"/onlineEndpoints/(?P<ep>[^/]+)/deployments/(?P<dep>[^/]+)/getLogs$"),
    ),
    ("batch_endpoints", re.compile(_WS + r"/batchEndpoints$")),
    ("batch_endpoint", re.compile(_WS + r"/batchEndpoints/(?P<ep>[^/]+)$")),
    ("batch_deployments", re.compile(_WS + r"/batchEndpoints/(?P<ep>[^/]+)/deployments$")),
    (
        "batch_deployment",
        re.compile(_WS + r"/batchEndpoints/(?P<ep>[^/]+)/deployments/(?P<dep>[^/]+)$"),
    ),
    ("job", re.compile(_WS + r"/jobs/(?P<job>[^/]+)$")),
    ("datastore", re.compile(_WS + r"/datastores/(?P<ds>[^/]+)$")),
    ("datastore_secrets", re.compile(_WS + r"/datastores/(?P<ds>[^/]+)/listSecrets$")),
    # Asset containers and versions alike for models, codes, environments and data.
    ("assets", re.compile(_WS + r"/(?P<kind>models|codes|environments|data)$")),
    ("asset_versions", re.compile(_WS + _ASSET + r"/versions$")),
    ("asset_version", re.compile(_WS + _ASSET + r"/versions/(?P<ver>[^/]+)$")),
    ("asset", re.compile(_WS + _ASSET + r"$")),
    ("pending_upload", re.compile(_WS + _ASSET + r"/versions/[^/]+/startPendingUpload$")),
    # The workspace's data plane: discovery of its API host, then run history (a job's start,
    # end and error live there, not in the ARM job resource).
    ("discovery", re.compile(r"^/discovery$")),
    ("run_children", re.compile(r"^/history/v1\.0" + _WS + r"/runs/(?P<job>[^/]+)/children$")),
    ("run", re.compile(r"^/history/v1\.0" + _WS + r"/runs/(?P<job>[^/]+)$")),
    ("operation", re.compile(r"/fake-operations/(?P<op>[^/]+)$")),
]
# Scoring requests go to the endpoint's own host, not to ARM.
SCORING_HOST = ".inference.ml.azure.com"
BLOB_HOST = ".blob.core.windows.net"
DATASTORE = "workspaceblobstore"


@dataclass
class Recorded:
    """One request as the SDK sent it (the Authorization header is dropped, never kept)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    host: str = ""

    @property
    def route(self) -> str | None:
        if self.host.endswith(SCORING_HOST):
            return _scoring_route(self.path)
        if self.host.endswith(BLOB_HOST):
            return "blob"
        return _match(self.path)[0]


@dataclass
class Blob:
    data: bytes
    metadata: dict[str, str]
    content_type: str = "application/octet-stream"


@dataclass
class _Failure:
    method: str
    route: str
    status: int
    code: str
    message: str
    headers: dict[str, str]
    times: int
    # Instead of an ARM error body: raise this azure-core exception at the transport, or answer
    # these bytes (a malformed body). `after`: the workspace handles the request first, so the
    # change happens and only its answer is lost or garbled.
    raises: type[BaseException] | None = None
    raw: bytes | None = None
    after: bool = False


@dataclass
class _Operation:
    status: str = "InProgress"
    polls_left: int = 1
    error: dict[str, str] | None = None
    on_success: Any = None
    on_failure: Any = None


@dataclass
class FakeAzureML(HttpTransport):
    subscription_id: str = "00000000-0000-0000-0000-000000000000"
    resource_group: str = "rg-studio"
    workspace_name: str = "ws-studio"
    location: str = "westeurope"
    # How many polls of a long-running operation answer InProgress before it ends.
    polls_before_done: int = 1
    requests: list[Recorded] = field(default_factory=list)
    endpoints: dict[str, dict] = field(default_factory=dict)
    deployments: dict[tuple[str, str], dict] = field(default_factory=dict)
    keys: dict[str, dict[str, str]] = field(default_factory=dict)
    logs: dict[tuple[str, str], str] = field(default_factory=dict)
    # While True, long-running operations stay InProgress however often they are polled
    # (an app that stops mid-operation); set back to False to let them finish.
    hold_operations: bool = False
    batch_endpoints: dict[str, dict] = field(default_factory=dict)
    batch_deployments: dict[tuple[str, str], dict] = field(default_factory=dict)
    # Batch scoring jobs by name, as the jobs GET answers them (see set_job_status).
    jobs: dict[str, dict] = field(default_factory=dict)
    runs: dict[str, dict] = field(default_factory=dict)
    storage_account: str = "wsstudiostore"
    container: str = "azureml-blobstore-0001"
    # The SAS token listSecrets hands out; tests assert it never reaches a log or a message.
    sas_token: str = field(
        default_factory=lambda: f"sv=2024-05-04&sr=c&sig={secrets.token_hex(16)}"
    )
    # "container/blob name" -> Blob: the default datastore's container, and the temporary ones
    # startPendingUpload hands out for code snapshots.
    blobs: dict[str, Blob] = field(default_factory=dict)
    containers: set[str] = field(default_factory=set)
    # (kind, name) -> {version: resource} for models, codes, environments, data.
    assets: dict[tuple[str, str], dict[str, dict]] = field(default_factory=dict)
    _failures: list[_Failure] = field(default_factory=list)
    # Waits the SDK's retry and polling policies asked this transport for (seconds, as asked);
    # each one really sleeps `time_scale` times as long (0: fault suites run without waiting).
    slept: list[float] = field(default_factory=list)
    time_scale: float = 1.0
    _operation_errors: list[tuple[str, dict | None]] = field(default_factory=list)
    _operations: dict[str, _Operation] = field(default_factory=dict)
    # azure-ai-ml uploads a folder's files from a thread pool.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- errors on demand ---------------------------------------------------------------------

    def fail(
        self,
        route: str,
        status: int,
        code: str = "Error",
        message: str = "Injected failure",
        method: str = "*",
        headers: dict[str, str] | None = None,
        times: int = 1,
        *,
        raises: type[BaseException] | None = None,
        raw: bytes | None = None,
        after: bool = False,
    ) -> None:
        """Answer the next `times` requests to `route` (see _ROUTES) with this ARM error; or
        raise `raises` (e.g. azure-core's ServiceRequestError) at the transport, or answer the
        bytes `raw`. `after=True` handles the request first (see _Failure)."""
        self._failures.append(
            _Failure(
                method, route, status, code, message, dict(headers or {}), times, raises, raw, after
            )
        )

    def clear_faults(self) -> None:
        """Forget injected failures that no request has used up yet."""
        self._failures.clear()
        self._operation_errors.clear()

    def set_job_status(
        self, name: str, status: str, error: dict[str, str] | None = None, ended: bool = True
    ) -> None:
        """Move a batch job on (Running, Completed, Failed with an ARM error, Canceled...)."""
        self.jobs[name]["properties"]["status"] = status
        run = self.runs[name]
        run["status"] = status
        if status not in ("NotStarted", "Queued", "Preparing"):
            run.setdefault("startTimeUtc", "2026-11-24T23:31:00Z")
        if ended and status not in ("NotStarted", "Queued", "Preparing", "Running"):
            run["endTimeUtc"] = "2026-11-24T23:40:00Z"
        if error is not None:
            run["error"] = {"error": dict(error)}

    def fail_operation(self, code: str, message: str = "Injected failure") -> None:
        """End the next long-running operation `Failed` with this error code; code
        "Canceled" ends it `Canceled` instead."""
        if code == "Canceled":
            self._operation_errors.append(("Canceled", None))
        else:
            self._operation_errors.append(("Failed", {"code": code, "message": message}))

    def of_route(self, route: str, method: str | None = None) -> list[Recorded]:
        return [
            r for r in self.requests if r.route == route and (method is None or r.method == method)
        ]

    # -- HttpTransport ------------------------------------------------------------------------

    def __enter__(self) -> FakeAzureML:
        return self

    def __exit__(self, *args: Any) -> None:
        pass

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def sleep(self, duration: float) -> None:
        # azure-core's retry and polling policies wait through their transport.
        self.slept.append(duration)
        time.sleep(duration * self.time_scale)

    def serve_storage(self, monkeypatch: Any) -> None:
        """Send azure-ai-ml's blob uploads here too (see the module docstring): its two
        constructors of storage clients get this transport."""
        from types import SimpleNamespace

        from azure.ai.ml._artifacts import _blob_storage_helper
        from azure.storage.blob import BlobServiceClient, ContainerClient

        def service(*args: Any, **kwargs: Any) -> BlobServiceClient:
            return BlobServiceClient(*args, transport=self, **kwargs)

        def container(url: str, *args: Any, **kwargs: Any) -> ContainerClient:
            return ContainerClient.from_container_url(url, *args, transport=self, **kwargs)

        monkeypatch.setattr(_blob_storage_helper, "BlobServiceClient", service)
        monkeypatch.setattr(
            _blob_storage_helper, "ContainerClient", SimpleNamespace(from_container_url=container)
        )

    def send(self, request: Any, **kwargs: Any) -> HttpResponseImpl:
        url = urlparse(request.url)
        if url.netloc.endswith(BLOB_HOST):
            return self._blob(request, url)
        body = request.content if hasattr(request, "content") else request.body
        if isinstance(body, bytes | bytearray):
            body = body.decode("utf-8")
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = body
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        # A copy: the in-memory workspace keeps (and later changes) the resource it was sent.
        recorded = Recorded(
            request.method,
            url.path,
            parse_qs(url.query),
            headers,
            copy.deepcopy(parsed),
            url.netloc,
        )
        self.requests.append(recorded)
        if url.netloc.endswith(SCORING_HOST):
            route, params = _scoring_route(url.path), {"ep": url.netloc.split(".", 1)[0]}
        else:
            route, params = _match(url.path)
        failure = self._take_failure(route, request.method)
        if failure is not None and not failure.after:
            return _injected(request, failure)
        answer = self._answer(request, route, params, parsed, headers)
        return answer if failure is None else _injected(request, failure)

    def _answer(
        self, request: Any, route: str | None, params: dict, parsed: Any, headers: dict
    ) -> HttpResponseImpl:
        url = urlparse(request.url)
        if route is None:
            return _response(request, 404, _error("NoSuchRoute", f"No fake for {url.path}"))
        if route == "score":
            status, payload, extra = self._score(request.method, params, parsed, headers)
            return _response(request, status, payload, extra)
        if route == "batch_invoke":
            status, payload, extra = self._batch_invoke(request.method, params, parsed, headers)
            return _response(request, status, payload, extra)
        handler = getattr(self, f"_{route}")
        status, payload, extra = handler(request.method, params, parsed)
        return _response(request, status, payload, extra)

    def _take_failure(self, route: str | None, method: str) -> _Failure | None:
        for failure in self._failures:
            if failure.route == route and failure.method in ("*", method):
                failure.times -= 1
                if failure.times <= 0:
                    self._failures.remove(failure)
                return failure
        return None

    # -- resources ----------------------------------------------------------------------------

    def _base(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{self.workspace_name}"
        )

    def _workspace(self, method: str, params: dict, body: Any) -> tuple:
        if params["ws"] != self.workspace_name:
            return 404, _error("ResourceNotFound", f"Workspace {params['ws']} not found"), {}
        return (
            200,
            {
                "id": self._base(),
                "name": self.workspace_name,
                "type": "Microsoft.MachineLearningServices/workspaces",
                "location": self.location,
                "properties": {
                    "mlFlowTrackingUri": f"azureml://{self.location}.api.azureml.ms/mlflow/v1.0"
                    f"{self._base()}",
                    "discoveryUrl": f"https://{self.location}.api.azureml.ms/discovery",
                },
            },
            {},
        )

    def _endpoints(self, method: str, params: dict, body: Any) -> tuple:
        return 200, {"value": list(self.endpoints.values())}, {}

    def _endpoint(self, method: str, params: dict, body: Any) -> tuple:
        name = params["ep"]
        if method == "GET":
            if name not in self.endpoints:
                return 404, _error("ResourceNotFound", f"Endpoint {name} not found"), {}
            return 200, self.endpoints[name], {}
        if method == "DELETE":
            if name not in self.endpoints:
                return 204, None, {}
            self.endpoints[name]["properties"]["provisioningState"] = "Deleting"

            def delete() -> None:
                self.endpoints.pop(name, None)
                for key in [k for k in self.deployments if k[0] == name]:
                    del self.deployments[key]

            return self._begin(202, None, delete)
        if method in ("PUT", "PATCH"):
            existing = self.endpoints.get(name)
            resource = dict(body or {})
            if existing and method == "PATCH":
                resource = {**existing, **resource}
                resource["properties"] = {
                    **existing["properties"],
                    **resource.get("properties", {}),
                }
            resource.setdefault("properties", {})
            resource.update(
                id=f"{self._base()}/onlineEndpoints/{name}",
                name=name,
                type="Microsoft.MachineLearningServices/workspaces/onlineEndpoints",
            )
            resource.setdefault("location", self.location)
            props = resource["properties"]
            props["scoringUri"] = f"https://{name}.{self.location}.inference.ml.azure.com/score"
            props["provisioningState"] = "Updating" if existing else "Creating"
            self.endpoints[name] = resource
            self.keys.setdefault(name, {"primaryKey": _key(), "secondaryKey": _key()})

            def done(state: str = "Succeeded") -> None:
                props["provisioningState"] = state

            return self._begin(201 if not existing else 200, resource, done)
        return 405, _error("MethodNotAllowed", method), {}

    def _list_keys(self, method: str, params: dict, body: Any) -> tuple:
        if params["ep"] not in self.keys:
            return 404, _error("ResourceNotFound", params["ep"]), {}
        return 200, self.keys[params["ep"]], {}

    def _regenerate_keys(self, method: str, params: dict, body: Any) -> tuple:
        which = (body or {}).get("keyType", "Primary")
        # The SDK sends the current key as keyValue; the service answers with a new one.
        value = _key()
        keys = self.keys[params["ep"]]
        return self._begin(
            202, None, lambda: keys.__setitem__(f"{which[0].lower()}{which[1:]}Key", value)
        )

    def _deployments(self, method: str, params: dict, body: Any) -> tuple:
        values = [v for (ep, _), v in self.deployments.items() if ep == params["ep"]]
        return 200, {"value": values}, {}

    def _deployment(self, method: str, params: dict, body: Any) -> tuple:
        key = (params["ep"], params["dep"])
        if params["ep"] not in self.endpoints:
            return 404, _error("ResourceNotFound", f"Endpoint {params['ep']} not found"), {}
        if method == "GET":
            if key not in self.deployments:
                return 404, _error("ResourceNotFound", f"Deployment {key[1]} not found"), {}
            return 200, self.deployments[key], {}
        if method == "DELETE":
            if key not in self.deployments:
                return 204, None, {}
            return self._begin(202, None, lambda: self.deployments.pop(key, None))
        if method == "PUT":
            existing = key in self.deployments
            resource = dict(body or {})
            resource.setdefault("properties", {})
            resource.update(
                id=f"{self._base()}/onlineEndpoints/{key[0]}/deployments/{key[1]}",
                name=key[1],
                type="Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments",
            )
            resource.setdefault("location", self.location)
            props = resource["properties"]
            props["provisioningState"] = "Updating" if existing else "Creating"
            # Azure fills in the default scale settings; the SDK's reader needs them.
            props.setdefault("scaleSettings", {"scaleType": "Default"})
            self.deployments[key] = resource
            self.logs.setdefault(key, "Booting worker\nInitializing model\n")

            def done(state: str = "Succeeded") -> None:
                props["provisioningState"] = state

            return self._begin(200 if existing else 201, resource, done)
        return 405, _error("MethodNotAllowed", method), {}

    def _get_logs(self, method: str, params: dict, body: Any) -> tuple:
        text = self.logs.get((params["ep"], params["dep"]), "")
        tail = (body or {}).get("tail")
        lines = text.splitlines(keepends=True)
        return 200, {"content": "".join(lines[-tail:] if tail else lines)}, {}

    def _score(self, method: str, params: dict, body: Any, headers: dict[str, str]) -> tuple:
        """Azure's no-code scoring answers a bare JSON list: here one entry per input row,
        naming the deployment that answered (the header's, else the one with most traffic)."""
        endpoint = self.endpoints.get(params["ep"])
        if endpoint is None:
            return 404, _error("ResourceNotFound", params["ep"]), {}
        chosen = {k.lower(): v for k, v in headers.items()}.get("azureml-model-deployment")
        if chosen is None:
            traffic = endpoint["properties"].get("traffic") or {}
            chosen = max(traffic, key=traffic.get) if traffic else None
        if chosen is None:
            return 424, _error("NoDeployment", "No deployment gets traffic"), {}
        data = (body or {}).get("input_data")
        if not isinstance(data, dict | list):
            return 400, _error("BadInput", "input_data is required"), {}
        rows = data.get("data", []) if isinstance(data, dict) else data
        return 200, [chosen] * len(rows), {}

    # -- batch endpoints ----------------------------------------------------------------------

    def _batch_endpoints(self, method: str, params: dict, body: Any) -> tuple:
        return 200, {"value": list(self.batch_endpoints.values())}, {}

    def _batch_endpoint(self, method: str, params: dict, body: Any) -> tuple:
        name = params["ep"]
        if method == "GET":
            if name not in self.batch_endpoints:
                return 404, _error("ResourceNotFound", f"Batch endpoint {name} not found"), {}
            return 200, self.batch_endpoints[name], {}
        if method == "DELETE":
            if name not in self.batch_endpoints:
                return 204, None, {}

            def delete() -> None:
                self.batch_endpoints.pop(name, None)
                for key in [k for k in self.batch_deployments if k[0] == name]:
                    del self.batch_deployments[key]

            return self._begin(202, None, delete)
        if method == "PUT":
            existing = self.batch_endpoints.get(name)
            resource = dict(body or {})
            resource.setdefault("properties", {})
            resource.update(
                id=f"{self._base()}/batchEndpoints/{name}",
                name=name,
                type="Microsoft.MachineLearningServices/workspaces/batchEndpoints",
            )
            resource.setdefault("location", self.location)
            props = resource["properties"]
            props["scoringUri"] = f"https://{name}.{self.location}.inference.ml.azure.com/jobs"
            props["provisioningState"] = "Updating" if existing else "Creating"
            self.batch_endpoints[name] = resource

            def done(state: str = "Succeeded") -> None:
                props["provisioningState"] = state

            return self._begin(200 if existing else 201, resource, done)
        return 405, _error("MethodNotAllowed", method), {}

    def _batch_deployments(self, method: str, params: dict, body: Any) -> tuple:
        values = [v for (ep, _), v in self.batch_deployments.items() if ep == params["ep"]]
        return 200, {"value": values}, {}

    def _batch_deployment(self, method: str, params: dict, body: Any) -> tuple:
        key = (params["ep"], params["dep"])
        if params["ep"] not in self.batch_endpoints:
            return 404, _error("ResourceNotFound", f"Batch endpoint {params['ep']} not found"), {}
        if method == "GET":
            if key not in self.batch_deployments:
                return 404, _error("ResourceNotFound", f"Deployment {key[1]} not found"), {}
            return 200, self.batch_deployments[key], {}
        if method == "DELETE":
            if key not in self.batch_deployments:
                return 204, None, {}
            return self._begin(202, None, lambda: self.batch_deployments.pop(key, None))
        if method == "PUT":
            existing = key in self.batch_deployments
            resource = dict(body or {})
            resource.setdefault("properties", {})
            resource.update(
                id=f"{self._base()}/batchEndpoints/{key[0]}/deployments/{key[1]}",
                name=key[1],
                type="Microsoft.MachineLearningServices/workspaces/batchEndpoints/deployments",
            )
            resource.setdefault("location", self.location)
            props = resource["properties"]
            props["provisioningState"] = "Updating" if existing else "Creating"
            self.batch_deployments[key] = resource

            def done(state: str = "Succeeded") -> None:
                props["provisioningState"] = state

            return self._begin(200 if existing else 201, resource, done)
        return 405, _error("MethodNotAllowed", method), {}

    def _batch_invoke(self, method: str, params: dict, body: Any, headers: dict[str, str]) -> tuple:
        """A batch endpoint's scoring URI starts a job; the fake answers it as NotStarted."""
        endpoint = self.batch_endpoints.get(params["ep"])
        if endpoint is None:
            return 404, _error("ResourceNotFound", params["ep"]), {}
        lowered = {k.lower(): v for k, v in headers.items()}
        chosen = lowered.get("azureml-model-deployment") or (
            endpoint["properties"].get("defaults") or {}
        ).get("deploymentName")
        if not chosen:
            return 400, _error("NoDefaultDeployment", "No deployment given or default"), {}
        inputs = ((body or {}).get("properties") or {}).get("inputData")
        if not inputs:
            return 400, _error("BadInput", "inputData is required"), {}
        # The name the client chose, else one of Azure's own. Job names are unique in a
        # workspace: a second job under a taken name is refused (the status Azure uses for it
        # is not documented; 409 here, and our code does not depend on which).
        name = ((body or {}).get("properties") or {}).get("name") or (
            f"batchjob-{secrets.token_hex(6)}"
        )
        if name in self.jobs:
            return 409, _error("UserError", f"A job named {name} already exists."), {}
        job = {
            "id": f"{self._base()}/jobs/{name}",
            "name": name,
            "type": "Microsoft.MachineLearningServices/workspaces/jobs",
            "properties": {
                "jobType": "Pipeline",
                "status": "NotStarted",
                "displayName": name,
                "experimentName": params["ep"],
                "tags": {
                    "azureml.batchrun": "true",
                    "azureml.deploymentname": chosen,
                    "azureml.jobtype": "azureml.batchjob",
                },
                "properties": {"azureml.deploymentname": chosen},
                "inputs": {},
                "outputs": {},
                "jobs": {},
                "creationContext": {"createdAt": "2026-11-24T23:30:00Z"},
            },
        }
        self.jobs[name] = job
        self.runs[name] = {"runId": name, "status": "NotStarted", "tags": {}}
        answer = {"id": job["id"], "name": name, "properties": {"status": "NotStarted"}}
        return 200, answer, {}

    def _job(self, method: str, params: dict, body: Any) -> tuple:
        job = self.jobs.get(params["job"])
        if job is None:
            return 404, _error("ResourceNotFound", f"Job {params['job']} not found"), {}
        return 200, job, {}

    # -- datastore, assets and blob storage ---------------------------------------------------

    def _datastore(self, method: str, params: dict, body: Any) -> tuple:
        if params["ds"] != DATASTORE:
            return 404, _error("ResourceNotFound", f"Datastore {params['ds']} not found"), {}
        resource = {
            "id": f"{self._base()}/datastores/{DATASTORE}",
            "name": DATASTORE,
            "type": "Microsoft.MachineLearningServices/workspaces/datastores",
            "properties": {
                "datastoreType": "AzureBlob",
                "accountName": self.storage_account,
                "containerName": self.container,
                "endpoint": "core.windows.net",
                "protocol": "https",
                "credentials": {"credentialsType": "AccountKey"},
                "isDefault": True,
            },
        }
        return 200, resource, {}

    def _datastore_secrets(self, method: str, params: dict, body: Any) -> tuple:
        if params["ds"] != DATASTORE:
            return 404, _error("ResourceNotFound", f"Datastore {params['ds']} not found"), {}
        return 200, {"secretsType": "Sas", "sasToken": self.sas_token}, {}

    def _asset_versions(self, method: str, params: dict, body: Any) -> tuple:
        versions = self.assets.get((params["kind"], params["asset"]), {})
        return 200, {"value": list(reversed(versions.values()))}, {}

    def _assets(self, method: str, params: dict, body: Any) -> tuple:
        """The containers of one kind (models.list() without a name): name, latest version,
        and the description and tags of the latest version."""
        found = []
        for (kind, name), versions in self.assets.items():
            if kind != params["kind"] or not versions:
                continue
            latest = versions[max(versions, key=lambda v: int(v) if v.isdigit() else 0)]
            props = latest.get("properties", {})
            found.append(
                {
                    "id": f"{self._base()}/{kind}/{name}",
                    "name": name,
                    "type": f"Microsoft.MachineLearningServices/workspaces/{kind}",
                    "properties": {
                        "latestVersion": latest["name"],
                        "description": props.get("description"),
                        "tags": props.get("tags", {}),
                        "isArchived": False,
                    },
                    "systemData": latest.get("systemData", {}),
                }
            )
        return 200, {"value": found}, {}

    def add_model(
        self,
        name: str,
        version: str,
        folder: Any,
        model_type: str = "mlflow_model",
        description: str = "",
        tags: dict[str, str] | None = None,
    ) -> str:
        """Register a model version as Azure ML keeps one: its files as blobs of the default
        datastore (under azureml/NAME/VERSION/model/) and the version resource pointing at them.
        Returns the version's datastore URI."""
        from pathlib import Path

        prefix = f"azureml/{name}/{version}/model"
        root = Path(folder)
        for path in sorted(root.rglob("*")):
            if path.is_file():
                relative = path.relative_to(root).as_posix()
                self.blobs[f"{self.container}/{prefix}/{relative}"] = Blob(path.read_bytes(), {})
        uri = (
            f"azureml://subscriptions/{self.subscription_id}/resourcegroups/"
            f"{self.resource_group}/workspaces/{self.workspace_name}/datastores/{DATASTORE}"
            f"/paths/{prefix}"
        )
        self.assets.setdefault(("models", name), {})[version] = {
            "id": f"{self._base()}/models/{name}/versions/{version}",
            "name": version,
            "type": "Microsoft.MachineLearningServices/workspaces/models/versions",
            "properties": {
                "modelType": model_type,
                "modelUri": uri,
                "description": description,
                "tags": dict(tags or {}),
                "properties": {},
                "flavors": {},
                "isArchived": False,
                "provisioningState": "Succeeded",
            },
            "systemData": {
                "createdAt": "2026-11-20T10:00:00Z",
                "createdBy": "data.scientist@example.com",
                "lastModifiedAt": "2026-11-20T10:00:00Z",
            },
        }
        return uri

    def _asset(self, method: str, params: dict, body: Any) -> tuple:
        versions = self.assets.get((params["kind"], params["asset"]))
        if not versions:
            return 404, _error("ResourceNotFound", f"{params['asset']} not found"), {}
        latest = max(versions, key=lambda v: int(v) if v.isdigit() else 0)
        next_version = str(int(latest) + 1) if latest.isdigit() else "1"
        resource = {
            "id": f"{self._base()}/{params['kind']}/{params['asset']}",
            "name": params["asset"],
            "properties": {"latestVersion": latest, "nextVersion": next_version},
        }
        return 200, resource, {}

    def _asset_version(self, method: str, params: dict, body: Any) -> tuple:
        kind, name, version = params["kind"], params["asset"], params["ver"]
        versions = self.assets.setdefault((kind, name), {})
        if method == "GET":
            if version not in versions:
                return 404, _error("ResourceNotFound", f"{name}:{version} not found"), {}
            return 200, versions[version], {}
        if method == "PUT":
            resource = dict(body or {})
            resource.update(
                id=f"{self._base()}/{kind}/{name}/versions/{version}",
                name=version,
                type=f"Microsoft.MachineLearningServices/workspaces/{kind}/versions",
            )
            props = resource.setdefault("properties", {})
            props.setdefault("provisioningState", "Succeeded")
            if kind == "models":
                props.setdefault("flavors", {})  # Azure fills it in; the SDK's reader needs it
            existed = version in versions
            versions[version] = resource
            return (200 if existed else 201), resource, {}
        return 405, _error("MethodNotAllowed", method), {}

    def _pending_upload(self, method: str, params: dict, body: Any) -> tuple:
        """A temporary container for a code snapshot, with a SAS URI to write it."""
        container = f"code-{secrets.token_hex(8)}"
        self.containers.add(container)
        blob_uri = f"https://{self.storage_account}{BLOB_HOST}/{container}"
        reference = {
            "blobUri": blob_uri,
            "credential": {"credentialType": "SAS", "sasUri": f"{blob_uri}?{self.sas_token}"},
        }
        answer = {
            "blobReferenceForConsumption": reference,
            "pendingUploadId": secrets.token_hex(8),
            "pendingUploadType": "TemporaryBlobReference",
        }
        return 200, answer, {}

    def _blob(self, request: Any, url: Any) -> HttpResponseImpl:
        """The storage account's blob service: blob properties (HEAD), PUT blob, PUT metadata.
        Recorded like ARM requests, with the SAS signature masked."""
        query = parse_qs(url.query)
        if "sig" in query:
            query["sig"] = ["***"]
        body = _raw_body(request)
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        with self._lock:
            self.requests.append(
                Recorded(request.method, url.path, query, headers, body, url.netloc)
            )
        container, _, name = url.path.lstrip("/").partition("/")
        name = f"{container}/{unquote(name)}"
        common = {
            "x-ms-request-id": secrets.token_hex(8),
            "x-ms-version": "2025-01-05",
            "Date": _http_date(),
            "ETag": '"0x8DC' + secrets.token_hex(6).upper() + '"',
            "Last-Modified": _http_date(),
        }
        known = container == self.container or container in self.containers
        if not known or not url.netloc.startswith(self.storage_account + "."):
            return _storage(request, 404, {**common, "x-ms-error-code": "ContainerNotFound"})
        lowered = {k.lower(): v for k, v in headers.items()}
        comp = (query.get("comp") or [""])[0]
        if request.method == "GET" and comp == "list" and query.get("restype") == ["container"]:
            return self._list_blobs(request, container, query, common)
        blob = self.blobs.get(name)
        ranged = lowered.get("x-ms-range") or lowered.get("range")
        if request.method == "GET" and not comp and blob is not None and ranged:
            # A download's first request asks a range; the answer says the blob's whole size.
            start, _, end = ranged.removeprefix("bytes=").partition("-")
            last = min(int(end) if end else len(blob.data) - 1, len(blob.data) - 1)
            data = blob.data[int(start) : last + 1]
            extra = {
                "Content-Length": str(len(data)),
                "Content-Range": f"bytes {start}-{last}/{len(blob.data)}",
                "Content-Type": blob.content_type,
                "x-ms-blob-type": "BlockBlob",
                "x-ms-creation-time": common["Date"],
            }
            return _storage(request, 206, {**common, **extra}, data)
        if request.method in ("HEAD", "GET") and not comp:
            if blob is None:
                return _storage(request, 404, {**common, "x-ms-error-code": "BlobNotFound"})
            meta = {f"x-ms-meta-{k}": v for k, v in blob.metadata.items()}
            extra = {
                "Content-Length": str(len(blob.data)),
                "Content-Type": blob.content_type,
                "x-ms-blob-type": "BlockBlob",
                "x-ms-creation-time": common["Date"],
                **meta,
            }
            data = blob.data if request.method == "GET" else b""
            return _storage(request, 200, {**common, **extra}, data)
        if request.method == "PUT" and comp == "metadata":
            if blob is None:
                return _storage(request, 404, {**common, "x-ms-error-code": "BlobNotFound"})
            blob.metadata = {
                k[len("x-ms-meta-") :]: v for k, v in lowered.items() if k.startswith("x-ms-meta-")
            }
            return _storage(request, 200, common)
        if request.method == "PUT" and not comp:
            metadata = {
                k[len("x-ms-meta-") :]: v for k, v in lowered.items() if k.startswith("x-ms-meta-")
            }
            content_type = lowered.get("x-ms-blob-content-type", "application/octet-stream")
            self.blobs[name] = Blob(body or b"", metadata, content_type)
            extra = {"x-ms-request-server-encrypted": "true"}
            return _storage(request, 201, {**common, **extra})
        return _storage(request, 400, {**common, "x-ms-error-code": "UnsupportedByFake"})

    def _list_blobs(self, request: Any, container: str, query: dict, common: dict) -> Any:
        """List Blobs (one page, the service's XML) of the blobs under `prefix`."""
        from xml.sax.saxutils import escape

        prefix = (query.get("prefix") or [""])[0]
        entries = []
        for key, blob in sorted(self.blobs.items()):
            owner, _, blob_name = key.partition("/")
            if owner != container or not blob_name.startswith(prefix):
                continue
            metadata = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in sorted(blob.metadata.items()))
            entries.append(
                f"<Blob><Name>{escape(blob_name)}</Name><Properties>"
                f"<Last-Modified>{common['Date']}</Last-Modified><Etag>{common['ETag']}</Etag>"
                f"<Content-Length>{len(blob.data)}</Content-Length>"
                f"<Content-Type>{blob.content_type}</Content-Type><BlobType>BlockBlob</BlobType>"
                f"</Properties><Metadata>{metadata}</Metadata></Blob>"
            )
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            f'<EnumerationResults ServiceEndpoint="https://{self.storage_account}{BLOB_HOST}/" '
            f'ContainerName="{container}"><Prefix>{escape(prefix)}</Prefix>'
            f"<Blobs>{''.join(entries)}</Blobs><NextMarker /></EnumerationResults>"
        ).encode()
        return _storage(request, 200, {**common, "Content-Type": "application/xml"}, body)

    def _discovery(self, method: str, params: dict, body: Any) -> tuple:
        return 200, {"api": f"https://{self.location}.api.azureml.ms"}, {}

    def _run(self, method: str, params: dict, body: Any) -> tuple:
        run = self.runs.get(params["job"])
        if run is None:
            return 404, _error("ResourceNotFound", f"Run {params['job']} not found"), {}
        return 200, run, {}

    def _run_children(self, method: str, params: dict, body: Any) -> tuple:
        # A batch job's child run (batchscoring) carries the `score` output; its datastore
        # blobs are beyond this fake, so no child is listed and no output is found.
        return 200, {"value": []}, {}

    # -- long-running operations --------------------------------------------------------------

    def _begin(self, status: int, payload: Any, on_success: Any) -> tuple:
        op_id = secrets.token_hex(8)
        operation = _Operation(polls_left=self.polls_before_done, on_success=on_success)
        if self._operation_errors:
            final, error = self._operation_errors.pop(0)
            operation.error = error
            operation.on_failure = (final, on_success)
        self._operations[op_id] = operation
        url = f"{ARM}/fake-operations/{op_id}?api-version=2024-10-01-preview"
        # Milliseconds: azure-core treats "Retry-After: 0" as absent and would wait its 5 s default.
        headers = {"Azure-AsyncOperation": url, "Retry-After-Ms": "5"}
        if status == 202:
            headers["Location"] = url
        return status, payload, headers

    def _operation(self, method: str, params: dict, body: Any) -> tuple:
        operation = self._operations[params["op"]]
        if self.hold_operations:
            return 200, {"status": "InProgress"}, {"Retry-After-Ms": "20"}
        if operation.status == "InProgress":
            if operation.polls_left > 0:
                operation.polls_left -= 1
            elif operation.on_failure is not None:
                final, callback = operation.on_failure
                operation.status = final
                if _accepts_state(callback):
                    callback(final)
            else:
                operation.status = "Succeeded"
                operation.on_success()
        payload: dict[str, Any] = {"status": operation.status}
        if operation.error is not None and operation.status == "Failed":
            payload["error"] = operation.error
        return 200, payload, {"Retry-After-Ms": "5"}


def _injected(request: Any, failure: _Failure) -> HttpResponseImpl:
    if failure.raises is not None:
        raise failure.raises(failure.message)
    if failure.raw is not None:
        headers = {"Content-Type": "application/json", **failure.headers}
        return _Canned(request, failure.status, failure.raw, headers)
    body = {"error": {"code": failure.code, "message": failure.message}}
    return _response(request, failure.status, body, failure.headers)


def _raw_body(request: Any) -> bytes:
    """A blob request's body as bytes: the storage client sends bytes, a file or chunks."""
    body = request.content if hasattr(request, "content") else request.body
    if body is None:
        return b""
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    if hasattr(body, "read"):
        return body.read()
    return b"".join(bytes(chunk) for chunk in body)


def _http_date() -> str:
    from email.utils import formatdate

    return formatdate(usegmt=True)


def _storage(request: Any, status: int, headers: dict[str, str], body: bytes = b"") -> _Canned:
    return _Canned(request, status, body, headers)


def _scoring_route(path: str) -> str:
    # Online endpoints score on /score; a batch endpoint's scoring URI (/jobs) starts a job.
    return "batch_invoke" if path.rstrip("/").endswith("/jobs") else "score"


def _accepts_state(callback: Any) -> bool:
    return getattr(callback, "__code__", None) is not None and callback.__code__.co_argcount == 1


def _match(path: str) -> tuple[str | None, dict[str, str]]:
    for name, pattern in _ROUTES:
        found = pattern.search(path)
        if found:
            return name, found.groupdict()
    return None, {}


def _error(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def _key() -> str:
    return secrets.token_urlsafe(24)


class _Canned(HttpResponseImpl):
    """A complete response held in memory (azure-core's rest response, already read)."""

    def __init__(self, request: Any, status: int, body: bytes, headers: dict[str, str]) -> None:
        super().__init__(
            request=request,
            internal_response=None,
            status_code=status,
            reason=_REASONS.get(status, "Status"),
            content_type=headers.get("Content-Type"),
            headers=case_insensitive_dict(headers),
            stream_download_generator=_BodyStream,
        )
        self._content = body

    def close(self) -> None:
        self._is_closed = True


class _BodyStream:
    """A streamed read of a held body (the blob download): one chunk. A class, as azure-core's
    own stream generators are: the storage client sets `properties` on what it gets back.
    azure-core passes the response by keyword, older callers positionally."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        response = kwargs.get("response")
        if response is None:
            response = next((a for a in args if isinstance(a, _Canned)), None)
        body = response._content if response is not None else b""
        # What azure-core's StreamDownloadGenerator offers the storage downloader.
        self.response = response
        self.content_length = len(body)
        self._chunks = iter([body] if body else [])

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        return next(self._chunks)


_REASONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    424: "Failed Dependency",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def _response(request: Any, status: int, payload: Any, headers: dict | None = None) -> _Canned:
    body = b"" if payload is None else json.dumps(payload).encode("utf-8")
    all_headers = {"Content-Type": "application/json", "x-ms-request-id": secrets.token_hex(8)}
    all_headers.update(headers or {})
    return _Canned(request, status, body, all_headers)


class StaticToken:
    """A credential that hands out a fixed token without any network (the tests assert that
    the token never reaches a store, log or page)."""

    def __init__(self, token: str = "token-never-stored") -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)


def fake_target(fake: FakeAzureML, settings: Any, store: Any) -> Any:
    """An AzureTarget on the fake's workspace, signed in with a StaticToken."""
    from deploystudio.deployment.azure.online import AzureTarget
    from deploystudio.deployment.azure.workspace import AzureWorkspace

    workspace = AzureWorkspace(fake.subscription_id, fake.resource_group, fake.workspace_name)
    return AzureTarget(settings, workspace, StaticToken(), transport=fake, store=store)
