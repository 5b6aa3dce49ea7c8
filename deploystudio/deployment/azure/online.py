"""Azure ML managed online endpoints as a DeploymentTarget, over azure-ai-ml's MLClient.

Azure holds the endpoints and deployments; the deployment store keeps, per resource, what Azure
does not (model URI, bundle, last failure) and the continuation token of a running operation
(records.py, through operations.py), so `resume_pending` after an app restart polls the same
operation instead of sending the request again; batch endpoints' operations (`.batch`) are
recorded and resumed the same way, in their own table. Every SDK failure becomes a
DeployStudioError (errors.py); the SDK's own console output is kept off stdout/stderr
(output.py).

Long operations take a `progress(str)` callback (the page's operation runner passes its own):
it gets the operation's status as it changes and its final state.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from deploystudio.config import Settings
from deploystudio.deployment.azure import records as azure_records
from deploystudio.deployment.azure.batch import AzureBatch
from deploystudio.deployment.azure.errors import (
    azure_errors,
    translate,
)
from deploystudio.deployment.azure.model_reference import azure_model_name
from deploystudio.deployment.azure.operations import (
    AzureOperations,
    Progress,
    enum_text,
    quiet,
    resource_state,
    wait,
)
from deploystudio.deployment.azure.output import sdk_output
from deploystudio.deployment.azure.records import (
    ENDPOINT_ROW,
    AzureRecord,
)
from deploystudio.deployment.azure.specs import (
    DEFAULT_INSTANCE_TYPE,
    ModelSource,
    OnlineDeploymentSpec,
    OnlineEndpointSpec,
    deployment_entity,
    endpoint_entity,
    model_source,
    scoring_code,
    validate_traffic,
)
from deploystudio.deployment.azure.workspace import (
    AzureWorkspace,
    default_credential,
    ml_client,
)
from deploystudio.deployment.base import (
    AuthMode,
    Capability,
    Deployment,
    DeploymentState,
    DeploymentTarget,
    Endpoint,
    EndpointKeys,
    Runtime,
)
from deploystudio.deployment.history import StoreHistory
from deploystudio.deployment.store import DeploymentStore
from deploystudio.deployment.traffic import traffic_share
from deploystudio.errors import (
    AzureSpecError,
    EndpointAuthError,
    PayloadError,
    ResourceInUseError,
)

DEPLOYMENT_CONFIG = {
    "instance_type",
    "instance_count",
    "bundle",
    "reference_in_azure",
    "request_settings",
    "liveness_probe",
    "readiness_probe",
    "environment_variables",
    "description",
}


class AzureTarget(StoreHistory, DeploymentTarget):
    """Online endpoints of one Azure ML workspace."""

    # No metrics (Azure Monitor's, not read here) and no restart (Azure ML has none: update
    # the deployment instead).
    capabilities = frozenset(
        {
            Capability.KEYS,
            Capability.LOGS,
            Capability.TRAFFIC,
            Capability.MIRROR,
            Capability.HISTORY,
        }
    )

    def __init__(
        self,
        settings: Settings,
        workspace: AzureWorkspace,
        credential: Any = None,
        transport: Any = None,
        store: DeploymentStore | None = None,
        registry: Any = None,
    ) -> None:
        """`credential`: a TokenCredential (None: DefaultAzureCredential); `transport`: an
        azure-core HttpTransport (None: the network). No Azure call happens here."""
        self.settings = settings
        self.workspace = workspace
        credential = credential if credential is not None else default_credential()
        self.client = ml_client(workspace, credential, transport)
        self.store = store or DeploymentStore.from_settings(settings)
        self.operations = AzureOperations(
            self.client, self.store, workspace.arm_id, credential, transport
        )
        self.records = self.operations.online
        # Batch endpoints' operations, recorded and resumed like the online ones.
        self.batch_records = self.operations.batch
        self.registry = registry

    @property
    def batch(self) -> AzureBatch:
        """The workspace's batch endpoints (batch.AzureBatch), on the same MLClient;
        their long operations are recorded in `batch_records` and resumed by resume_pending."""
        return AzureBatch(self.client, self.settings, operations=self.operations)

    # -- endpoints ---------------------------------------------------------------------------

    def create_endpoint(
        self,
        name: str,
        config: Mapping[str, Any] | None = None,
        *,
        progress: Progress | None = None,
    ) -> Endpoint:
        values = dict(config or {})
        spec = OnlineEndpointSpec(
            name=name,
            auth_mode=str(values.get("auth_mode", "key")),
            description=str(values.get("description", "")),
            tags=dict(values.get("tags") or {}),
        )
        entity = endpoint_entity(spec)  # checked before any record or request
        self.operations.submit(
            "create",
            name,
            ENDPOINT_ROW,
            lambda: self.client.online_endpoints.begin_create_or_update(entity),
            f"create endpoint {name!r}",
            progress,
            settings={"auth_mode": AuthMode(spec.auth_mode).value},
        )
        return self.get_endpoint(name)

    def update_endpoint(
        self,
        endpoint: str,
        config: Mapping[str, Any] | None = None,
        *,
        progress: Progress | None = None,
    ) -> Endpoint:
        """Change description, tags, traffic ({deployment: weight}) or mirror
        ([deployment, percent] or None), checked like local traffic before Azure sees it."""
        values = dict(config or {})
        current = self._get_endpoint_entity(endpoint)
        deployments = [d.name for d in self._deployment_entities(endpoint)]
        if "traffic" in values:
            traffic = {k: int(v) for k, v in dict(values["traffic"] or {}).items()}
        else:
            traffic = {k: v for k, v in (current.traffic or {}).items() if v}
        if "mirror" in values:
            mirror = dict([values["mirror"]]) if values["mirror"] else {}
        else:
            mirror = {k: v for k, v in (current.mirror_traffic or {}).items() if v}
        # Same rules as local endpoints, checked before Azure sees the change.
        validate_traffic(deployments, traffic, mirror)
        entity = endpoint_entity(
            OnlineEndpointSpec(
                name=current.name,
                auth_mode=enum_text(current.auth_mode).lower() or "key",
                description=str(values.get("description", current.description or "")),
                tags=dict(values.get("tags", current.tags or {})),
                traffic={k: v for k, v in traffic.items() if v},
                mirror_traffic=mirror,
            ),
            deployments,
        )
        operation = "traffic" if {"traffic", "mirror"} & values.keys() else "update"
        self.operations.submit(
            operation,
            endpoint,
            ENDPOINT_ROW,
            lambda: self.client.online_endpoints.begin_create_or_update(entity),
            f"update endpoint {endpoint!r}",
            progress,
        )
        return self.get_endpoint(endpoint)

    def set_traffic(
        self,
        endpoint: str,
        traffic: Mapping[str, int],
        mirror: tuple[str, int] | None = None,
        *,
        progress: Progress | None = None,
    ) -> Endpoint:
        return self.update_endpoint(
            endpoint, {"traffic": dict(traffic), "mirror": mirror}, progress=progress
        )

    def delete_endpoint(self, endpoint: str, *, progress: Progress | None = None) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self.client.online_endpoints.get(endpoint)
        except ResourceNotFoundError:
            self.records.remove(endpoint)
            return
        except Exception as exc:
            raise translate(exc, f"read endpoint {endpoint!r}", endpoint=endpoint) from exc
        self.operations.submit(
            "delete",
            endpoint,
            ENDPOINT_ROW,
            lambda: self.client.online_endpoints.begin_delete(name=endpoint),
            f"delete endpoint {endpoint!r}",
            progress,
        )

    def list_endpoints(self) -> list[Endpoint]:
        with azure_errors("list the workspace's online endpoints"):
            entities = list(self.client.online_endpoints.list())
        found = {e.name.lower(): self._endpoint(e) for e in entities}
        # Rows Azure does not list yet (a create whose PUT was not answered) or any more.
        for record in self.records.all():
            missing = record.endpoint_name.lower() not in found
            if record.deployment_name == ENDPOINT_ROW and missing and record.state != "ready":
                found[record.endpoint_name.lower()] = self._endpoint_from_record(record)
        return sorted(found.values(), key=lambda e: e.name.lower())

    def get_endpoint(self, endpoint: str) -> Endpoint:
        return self._endpoint(self._get_endpoint_entity(endpoint))

    # -- deployments -------------------------------------------------------------------------

    def create_deployment(
        self,
        name: str,
        model_uri: str,
        endpoint: str,
        config: Mapping[str, Any] | None = None,
        *,
        progress: Progress | None = None,
    ) -> Deployment:
        """Deploy with no traffic. `model_uri` is `azureml:NAME:VERSION` (no-code MLflow model
        registered in the workspace) or a registry URI; config: instance_type, instance_count,
        bundle ("name:version": score.py + environment), reference_in_azure, request_settings,
        liveness_probe, readiness_probe, environment_variables (name -> value), description."""
        values = dict(config or {})
        unknown = set(values) - DEPLOYMENT_CONFIG
        if unknown:
            raise AzureSpecError(
                f"Unknown Azure deployment setting(s) {', '.join(sorted(unknown))}: use "
                + ", ".join(sorted(DEPLOYMENT_CONFIG))
                + "."
            )
        self._get_endpoint_entity(endpoint)
        return self._put_deployment("create", name, endpoint, model_uri, values, progress)

    def update_deployment(
        self,
        name: str,
        endpoint: str,
        model_uri: str | None = None,
        config: Mapping[str, Any] | None = None,
        *,
        progress: Progress | None = None,
    ) -> Deployment:
        current = self.get_deployment(name, endpoint)
        record = self.records.get(endpoint, name)
        values = {
            "instance_type": current.settings.get("instance_type", DEFAULT_INSTANCE_TYPE),
            "instance_count": current.settings.get("instance_count", 1),
        }
        if record is not None and record.bundle and model_uri is None:
            values["bundle"] = record.bundle
        values.update(config or {})
        uri = model_uri or current.model_uri
        return self._put_deployment("update", name, endpoint, uri, values, progress)

    def _put_deployment(
        self,
        action: str,
        name: str,
        endpoint: str,
        model_uri: str,
        values: Mapping[str, Any],
        progress: Progress | None,
    ) -> Deployment:
        """Create or update (the same PUT) and record it; returns the deployment as Azure has it."""
        spec = self._deployment_spec(name, endpoint, model_uri, values)
        entity = deployment_entity(spec)
        self.operations.submit(
            action,
            endpoint,
            name,
            lambda: self.client.online_deployments.begin_create_or_update(entity),
            f"{action} deployment {name!r} on endpoint {endpoint!r}",
            progress,
            model_uri=model_uri,
            bundle=values.get("bundle"),
            settings=_recorded_settings(spec),
            instance=f"{spec.instance_count} x {spec.instance_type}",
        )
        return self.get_deployment(name, endpoint)

    def delete_deployment(
        self, name: str, endpoint: str, *, progress: Progress | None = None
    ) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        current = self._get_endpoint_entity(endpoint)
        what = traffic_share(name, current.traffic or {}, current.mirror_traffic or {})
        if what:
            raise ResourceInUseError(
                f"Deployment {name!r} still gets {what} on endpoint {endpoint!r}: move its "
                "traffic to another deployment first."
            )
        try:
            self.client.online_deployments.get(name, endpoint)
        except ResourceNotFoundError:
            self.records.remove(endpoint, name)
            return
        except Exception as exc:
            raise translate(
                exc, f"read deployment {name!r}", endpoint=endpoint, deployment=name
            ) from exc
        self.operations.submit(
            "delete",
            endpoint,
            name,
            lambda: self.client.online_deployments.begin_delete(name=name, endpoint_name=endpoint),
            f"delete deployment {name!r} of endpoint {endpoint!r}",
            progress,
        )

    def list_deployments(self, endpoint: str | None = None) -> list[Deployment]:
        names = [endpoint] if endpoint else [e.name for e in self.list_endpoints()]
        found: list[Deployment] = []
        for name in names:
            found.extend(self._deployment(d) for d in self._deployment_entities(name))
        return sorted(found, key=lambda d: (d.endpoint_name.lower(), d.name.lower()))

    def get_deployment(self, name: str, endpoint: str) -> Deployment:
        with azure_errors(f"read deployment {name!r}", endpoint=endpoint, deployment=name):
            entity = self.client.online_deployments.get(name, endpoint)
        return self._deployment(entity)

    def deploy_model(
        self,
        endpoint: str,
        deployment: str,
        model_uri: str,
        config: Mapping[str, Any] | None = None,
        *,
        auth_mode: AuthMode | str = AuthMode.KEY,
        all_traffic: bool = False,
        progress: Progress | None = None,
    ) -> Deployment:
        """The page's one-click flow: create the endpoint if it is missing, create (or update)
        the deployment, then, if asked and it is ready, send it all live traffic."""
        from azure.core.exceptions import ResourceNotFoundError

        say = progress or quiet
        try:
            self.client.online_endpoints.get(endpoint)
        except ResourceNotFoundError:
            say(f"Endpoint {endpoint!r} does not exist yet: creating it ({auth_mode}).")
            self.create_endpoint(endpoint, {"auth_mode": auth_mode}, progress=say)
        except Exception as exc:
            raise translate(exc, f"read endpoint {endpoint!r}", endpoint=endpoint) from exc
        try:
            self.client.online_deployments.get(deployment, endpoint)
            exists = True
        except ResourceNotFoundError:
            exists = False
        except Exception as exc:
            raise translate(exc, f"read deployment {deployment!r}", endpoint=endpoint) from exc
        if exists:
            say(f"Deployment {deployment!r} exists: updating it.")
            record = self.update_deployment(deployment, endpoint, model_uri, config, progress=say)
        else:
            record = self.create_deployment(deployment, model_uri, endpoint, config, progress=say)
        if all_traffic and record.state is DeploymentState.READY:
            self.set_traffic(endpoint, {deployment: 100}, progress=say)
        return record

    # -- keys, logs, scoring -----------------------------------------------------------------

    def get_keys(self, endpoint: str) -> EndpointKeys:
        """The endpoint's two keys (key auth only); never logged (EndpointKeys masks them)."""
        from azure.ai.ml.entities import EndpointAuthKeys

        with azure_errors(f"read the keys of endpoint {endpoint!r}", endpoint=endpoint):
            keys = self.client.online_endpoints.get_keys(endpoint)
        if not isinstance(keys, EndpointAuthKeys):
            raise EndpointAuthError(
                f"Endpoint {endpoint!r} uses token authentication, so it has no keys: callers "
                "get a token (az ml online-endpoint get-credentials)."
            )
        return EndpointKeys(keys.primary_key or "", keys.secondary_key or "")

    def regenerate_key(
        self, endpoint: str, which: str, *, progress: Progress | None = None
    ) -> EndpointKeys:
        """Replace the primary or secondary key; return both keys."""
        if which not in ("primary", "secondary"):
            raise EndpointAuthError(f"Key {which!r} does not exist: use primary or secondary.")
        action = f"regenerate the {which} key of endpoint {endpoint!r}"
        with azure_errors(action, endpoint=endpoint), sdk_output():
            poller = self.client.online_endpoints.begin_regenerate_keys(endpoint, key_type=which)
            wait(poller, action, progress or quiet)
        return self.get_keys(endpoint)

    def get_logs(self, name: str, endpoint: str, lines: int = 100) -> str:
        """The last `lines` lines of the deployment's inference server log."""
        with azure_errors(
            f"read the logs of deployment {name!r}", endpoint=endpoint, deployment=name
        ):
            return self.client.online_deployments.get_logs(name, endpoint, lines)

    def predict(
        self,
        deployment_name: str | None = None,
        inputs: Any = None,
        endpoint: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> dict[str, Any] | list[Any]:
        """Score on the endpoint (or one deployment). `inputs`: a JSON-able body in Azure's
        format ({"input_data": ...}) or a payloads.ModelInput."""
        from azure.core.exceptions import HttpResponseError

        from deploystudio.payload_formats import ModelInput, PayloadFormat, write_payload

        if endpoint is None:
            raise AzureSpecError("Name the Azure endpoint to score on.")
        if isinstance(inputs, ModelInput):
            body: Any = json.loads(write_payload(inputs, PayloadFormat.AZURE_INPUT_DATA))
        else:
            body = inputs
        if params:
            if not isinstance(body, dict):
                raise PayloadError("Parameters need a JSON object body ({'input_data': ...}).")
            body = {**body, "params": dict(params)}
        # invoke() only reads a request file: write one under the data folder, private to this
        # user, and remove it whatever happens.
        folder = self.settings.home / "work" / "azure"
        folder.mkdir(parents=True, exist_ok=True)
        handle, path = tempfile.mkstemp(suffix=".json", dir=folder)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                json.dump(body, file)
            try:
                text = self.client.online_endpoints.invoke(
                    endpoint_name=endpoint, request_file=path, deployment_name=deployment_name
                )
            except HttpResponseError as exc:
                if getattr(exc, "status_code", None) in (400, 422):
                    raise PayloadError(
                        f"Endpoint {endpoint!r} refused the input ({exc.status_code}): "
                        f"{exc.message}. Check the columns and types against the signature."
                    ) from exc
                raise translate(
                    exc,
                    f"score on endpoint {endpoint!r}",
                    endpoint=endpoint,
                    deployment=deployment_name,
                ) from exc
            except Exception as exc:
                raise translate(
                    exc,
                    f"score on endpoint {endpoint!r}",
                    endpoint=endpoint,
                    deployment=deployment_name,
                ) from exc
        finally:
            os.unlink(path)
        try:
            return json.loads(text)
        except ValueError:
            return [text]

    def resume_pending(self, progress: Progress | None = None) -> list[AzureRecord]:
        """Finish watching operations a previous app run started, online and batch: poll each
        stored operation (no request is sent again). Returns the records as they ended."""
        return self.operations.resume_pending(progress)

    # -- internals ---------------------------------------------------------------------------

    def _get_endpoint_entity(self, endpoint: str) -> Any:
        with azure_errors(f"read endpoint {endpoint!r}", endpoint=endpoint):
            return self.client.online_endpoints.get(endpoint)

    def _deployment_entities(self, endpoint: str) -> list[Any]:
        with azure_errors(f"list the deployments of endpoint {endpoint!r}", endpoint=endpoint):
            return list(self.client.online_deployments.list(endpoint))

    def _deployment_spec(
        self, name: str, endpoint: str, model_uri: str, values: Mapping[str, Any]
    ) -> OnlineDeploymentSpec:
        if model_uri.startswith("azureml:"):
            source = ModelSource(azure_reference=model_uri)
        else:
            source = model_source(
                model_uri,
                self.settings,
                bool(values.get("reference_in_azure", False)),
                self.registry,
            )
        bundle = values.get("bundle")
        return OnlineDeploymentSpec(
            name=name,
            endpoint_name=endpoint,
            model=source,
            instance_type=str(values.get("instance_type") or DEFAULT_INSTANCE_TYPE),
            instance_count=values.get("instance_count", 1),
            request_settings=dict(values.get("request_settings") or {}),
            liveness_probe=dict(values.get("liveness_probe") or {}),
            readiness_probe=dict(values.get("readiness_probe") or {}),
            environment_variables=dict(values.get("environment_variables") or {}),
            code=scoring_code(bundle, self.settings) if bundle else None,
            description=str(values.get("description", "")),
        )

    def _endpoint(self, entity: Any) -> Endpoint:
        record = self.records.get(entity.name)
        now = datetime.now(UTC)
        state = resource_state(entity.provisioning_state)
        if record is not None and record.state == azure_records.FAILED:
            state, reason = DeploymentState.FAILED, record.reason
        else:
            reason = None
        mirror = [(k, v) for k, v in (entity.mirror_traffic or {}).items() if v]
        traffic = {k: int(v) for k, v in (entity.traffic or {}).items()}
        # The SDK lists deployments without live traffic as 0, except a mirrored one: the
        # record lists every deployment (base.Endpoint).
        for name, _ in mirror:
            traffic.setdefault(name, 0)
        return Endpoint(
            name=entity.name,
            auth_mode=AuthMode(enum_text(entity.auth_mode).lower() or AuthMode.KEY),
            scoring_uri=entity.scoring_uri,
            front_pid=None,
            front_port=None,
            state=state,
            reason=reason,
            traffic=traffic,
            mirror=mirror[0] if mirror else None,
            created_at=record.created_at if record else now,
            updated_at=record.updated_at if record else now,
            description=entity.description or "",
            tags=dict(entity.tags or {}),
        )

    def _endpoint_from_record(self, record: AzureRecord) -> Endpoint:
        state = (
            DeploymentState.FAILED
            if record.state == azure_records.FAILED
            else DeploymentState.PENDING
        )
        return Endpoint(
            name=record.endpoint_name,
            auth_mode=record.auth_mode or AuthMode.KEY,
            scoring_uri=None,
            front_pid=None,
            front_port=None,
            state=state,
            reason=record.reason,
            traffic={},
            mirror=None,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )

    def _deployment(self, entity: Any) -> Deployment:
        record = self.records.get(entity.endpoint_name, entity.name)
        now = datetime.now(UTC)
        state = resource_state(entity.provisioning_state)
        reason = log_tail = None
        if record is not None and record.state == azure_records.FAILED:
            reason, log_tail = record.reason, record.log_tail
        settings = dict(record.settings) if record else {}
        settings.update(instance_type=entity.instance_type, instance_count=entity.instance_count)
        return Deployment(
            endpoint_name=entity.endpoint_name,
            name=entity.name,
            model_uri=(record.model_uri if record and record.model_uri else None)
            or azure_model_name(entity.model)
            or "",
            runtime=Runtime.AZUREML,
            bundle=record.bundle if record else None,
            state=state,
            reason=reason,
            log_tail=log_tail,
            pid=None,
            port=None,
            log_path=None,
            created_at=record.created_at if record else now,
            updated_at=record.updated_at if record else now,
            settings=settings,
        )


def _recorded_settings(spec: OnlineDeploymentSpec) -> dict[str, Any]:
    """What the record keeps of a spec: never environment variable values (maybe secrets)."""
    return {
        "instance_type": spec.instance_type,
        "instance_count": spec.instance_count,
        "request_settings": dict(spec.request_settings),
        "liveness_probe": dict(spec.liveness_probe),
        "readiness_probe": dict(spec.readiness_probe),
        "environment_variables": sorted(spec.environment_variables),
    }


