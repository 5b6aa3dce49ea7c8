"""Deploy Studio's local target as an MLflow deployments plugin (target name `deploystudio`).

Registered under the `mlflow.deployments` entry point group (pyproject.toml), so that

    mlflow deployments create -t deploystudio --name blue -m models:/iris-classifier/1 \\
        --endpoint iris
    mlflow deployments predict -t deploystudio --endpoint iris --input-path rows.json

and `mlflow.deployments.get_deploy_client("deploystudio")` drive the same endpoints, records and
servers as the app and the `deploystudio` command. As MLflow's plugin contract asks, the module
has `run_local`, `target_help` and exactly one `BaseDeploymentClient` subclass; errors reach
MLflow as `MlflowException`s carrying Deploy Studio's message.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from mlflow.deployments import BaseDeploymentClient, PredictionsResponse
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    INVALID_PARAMETER_VALUE,
    RESOURCE_ALREADY_EXISTS,
    RESOURCE_DOES_NOT_EXIST,
)

from deploystudio.errors import (
    DeploymentNotFoundError,
    DeployStudioError,
    EndpointNotFoundError,
    NameTakenError,
)

TARGET = "deploystudio"
PYFUNC_FLAVOR = "python_function"
T = TypeVar("T")


def target_help() -> str:
    """What `mlflow deployments help -t deploystudio` prints."""
    return """\
Deploy Studio local endpoints: each deployment is a server process on 127.0.0.1 behind its
endpoint's scoring URI (http://127.0.0.1:PORT/score, key auth), as on Azure ML.

Target URI: `deploystudio` (the data folder comes from DEPLOYSTUDIO_HOME, default ./.studio, and
the registry from MLFLOW_TRACKING_URI), or `deploystudio:/path/to/data-folder`.

create / update deployment (--endpoint E; default: an endpoint named like the deployment, created
when missing). Config (-C key=value):
  runtime=azureml|mlflow   Azure ML's inference server (default) or MLflow's scoring server
  bundle=NAME:VERSION      a saved scoring bundle (score.py) to serve the model with (azureml)
  instance_count=N         server workers (default 1)
  all_traffic=true|false   give it 100% of the endpoint's traffic (default: true when the
                           endpoint is new or has no live traffic yet)
  timeout=SECONDS          how long to wait for the server to be ready (default 300)
Models: models:/NAME/VERSION, models:/NAME@ALIAS (resolved to its version now), runs:/..., a
folder. Only the python_function flavor is served.

create-endpoint -C auth_mode=key|none -C description=TEXT
update-endpoint -C traffic=blue=90,green=10 -C mirror=green=10 (or mirror=none)
predict --endpoint E (traffic decides) or --name D (that deployment, through its endpoint).
A deployment that gets traffic cannot be deleted: move its traffic first (update-endpoint), or
delete the whole endpoint (delete-endpoint). Deleting the only deployment of the endpoint that
`create` made for it (named like the deployment) deletes that endpoint too."""


def run_local(target: str, name: str, model_uri: str, flavor=None, config=None) -> None:
    """Deploy `model_uri` as deployment `name` of a local endpoint and print its scoring URI.

    Deploy Studio's target is local already: this is `create_deployment` with all traffic.
    """
    client = DeployStudioDeploymentClient(target)
    options = dict(config or {})
    options.setdefault("all_traffic", "true")
    deployment = client.create_deployment(name, model_uri, flavor, options)
    endpoint = client.get_endpoint(deployment["endpoint_name"])
    print(
        f"Deployment {deployment['name']} of endpoint {endpoint['name']} is ready: "
        f"{endpoint['scoring_uri']} (keys: deploystudio endpoint keys {endpoint['name']})"
    )


def _mlflow_errors(method: Callable[..., T]) -> Callable[..., T]:
    """Raise DeployStudioErrors as MlflowExceptions (what MLflow's CLI and callers expect)."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return method(*args, **kwargs)
        except (EndpointNotFoundError, DeploymentNotFoundError) as exc:
            raise MlflowException(str(exc), error_code=RESOURCE_DOES_NOT_EXIST) from exc
        except NameTakenError as exc:
            raise MlflowException(str(exc), error_code=RESOURCE_ALREADY_EXISTS) from exc
        except DeployStudioError as exc:
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from exc

    return wrapper


def _flag(value: Any, what: str) -> bool:
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise MlflowException(f"Config {what}={value!r}: write true or false.", INVALID_PARAMETER_VALUE)


def _number(value: Any, what: str, kind: type = int) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise MlflowException(
            f"Config {what}={value!r} is not a number.", INVALID_PARAMETER_VALUE
        ) from None


def _deployment_dict(deployment) -> dict[str, Any]:
    # MLflow's CLI prints the "flavor" of what `create` and `update` return.
    return deployment.as_dict() | {"flavor": PYFUNC_FLAVOR}


def _weights(value: Any) -> dict[str, int]:
    """`{"blue": 90}` as given, or the CLI's text "blue=90,green=10"."""
    if isinstance(value, Mapping):
        return dict(value)
    from deploystudio.cli.endpoint import parse_weights

    return parse_weights([part for part in str(value).split(",") if part.strip()])


class DeployStudioDeploymentClient(BaseDeploymentClient):
    """MLflow's deployment client API over Deploy Studio's local target."""

    def __init__(self, target_uri: str = TARGET) -> None:
        super().__init__(target_uri)
        self._local = None

    @property
    def target(self):
        """The LocalTarget, made on first use (importing it loads MLflow's scoring helpers)."""
        if self._local is None:
            from deploystudio.config import load_settings
            from deploystudio.deployment.local.target import LocalTarget

            environ = None
            home = urlsplit(self.target_uri).path if ":" in self.target_uri else ""
            if home:
                environ = {**os.environ, "DEPLOYSTUDIO_HOME": str(Path(home))}
            self._local = LocalTarget(load_settings(environ))
        return self._local

    def _owner(self, name: str, endpoint: str | None) -> str:
        return endpoint or self.target.find_deployment(name).endpoint_name

    # -- deployments -------------------------------------------------------------------------

    def _options(self, flavor: str | None, config: Mapping[str, Any] | None) -> dict[str, Any]:
        if flavor not in (None, PYFUNC_FLAVOR):
            raise MlflowException(
                f"Deploy Studio serves the {PYFUNC_FLAVOR} flavor only, not {flavor!r}.",
                INVALID_PARAMETER_VALUE,
            )
        return dict(config or {})

    def _deployment_config(self, options: dict[str, Any]) -> dict[str, Any]:
        config: dict[str, Any] = {}
        for key in ("runtime", "bundle"):
            if key in options:
                config[key] = options.pop(key)
        if "instance_count" in options:
            count = _number(options.pop("instance_count"), "instance_count")
            config["settings"] = {"instance_count": count}
        if options:
            raise MlflowException(
                f"Unknown config for deploystudio: {', '.join(sorted(options))}. See "
                "`mlflow deployments help -t deploystudio`.",
                INVALID_PARAMETER_VALUE,
            )
        return config

    @_mlflow_errors
    def create_deployment(self, name, model_uri, flavor=None, config=None, endpoint=None):
        """Deploy under `endpoint` (created when missing); block until ready.

        Returns the deployment as a dict with a 'name' key. Raises MlflowException when the
        server does not start (with the reason and the server's log tail).
        """
        options = self._options(flavor, config)
        endpoint = endpoint or options.pop("endpoint", None) or name
        all_traffic = options.pop("all_traffic", None)
        timeout = _number(
            options.pop("timeout", self.target.start_timeout_seconds), "timeout", float
        )
        deployment_config = self._deployment_config(options)
        try:
            record = self.target.get_endpoint(endpoint)
        except EndpointNotFoundError:
            record = self.target.create_endpoint(endpoint)
        if all_traffic is None:
            give_traffic = not any(record.traffic.values())
        else:
            give_traffic = _flag(all_traffic, "all_traffic")
        deployment = self.target.create_deployment(
            name, model_uri, endpoint, deployment_config, timeout_seconds=timeout
        )
        if deployment.state != "ready":
            raise MlflowException(
                f"Deployment {endpoint}/{name} failed: {deployment.reason}\n\n"
                f"{deployment.log_tail or ''}".rstrip()
            )
        if give_traffic:
            self.target.update_endpoint(endpoint, {"traffic": {deployment.name: 100}})
        return _deployment_dict(deployment)

    @_mlflow_errors
    def update_deployment(self, name, model_uri=None, flavor=None, config=None, endpoint=None):
        """Serve a new model/config without a gap; returns the deployment dict."""
        options = self._options(flavor, config)
        owner = self._owner(name, endpoint or options.pop("endpoint", None))
        timeout = _number(
            options.pop("timeout", self.target.start_timeout_seconds), "timeout", float
        )
        deployment = self.target.update_deployment(
            name, owner, model_uri, self._deployment_config(options), timeout_seconds=timeout
        )
        if deployment.state != "ready":
            raise MlflowException(f"Deployment {owner}/{name} failed: {deployment.reason}")
        return _deployment_dict(deployment)

    @_mlflow_errors
    def delete_deployment(self, name, config=None, endpoint=None):
        """Stop and delete the deployment. Idempotent.

        Refused while it gets live traffic beside other deployments. The endpoint that
        `create_deployment` made for it (named like it, with no other deployment) goes with it:
        MLflow's callers know deployments only, so `create` then `delete` must leave nothing.
        """
        try:
            owner = self._owner(name, endpoint or (config or {}).get("endpoint"))
        except DeploymentNotFoundError:
            return
        siblings = [d.name for d in self.target.list_deployments(owner) if d.name != name]
        if owner == name and not siblings:
            self.target.delete_endpoint(owner)
            return
        self.target.delete_deployment(name, owner)

    @_mlflow_errors
    def list_deployments(self, endpoint=None):
        """Deployments (of `endpoint`, or of every endpoint) as dicts with a 'name' key."""
        return [_deployment_dict(d) for d in self.target.list_deployments(endpoint)]

    @_mlflow_errors
    def get_deployment(self, name, endpoint=None):
        """One deployment as a dict with a 'name' key."""
        return _deployment_dict(self.target.get_deployment(name, self._owner(name, endpoint)))

    @_mlflow_errors
    def predict(self, deployment_name=None, inputs=None, endpoint=None):
        """Score `inputs` (a DataFrame, list, array or request dict) through the endpoint;
        returns a PredictionsResponse ({"predictions": ...})."""
        answer = self.target.predict(
            deployment_name=deployment_name, inputs=inputs, endpoint=endpoint
        )
        if isinstance(answer, dict) and "predictions" in answer:
            return PredictionsResponse(answer)
        return PredictionsResponse({"predictions": answer})

    # -- endpoints ---------------------------------------------------------------------------

    @_mlflow_errors
    def create_endpoint(self, name, config=None):
        """Create an endpoint and start its front; returns it as a dict."""
        endpoint = self.target.create_endpoint(name, dict(config or {}))
        if endpoint.state != "ready":
            raise MlflowException(f"Endpoint {name} failed to start: {endpoint.reason}")
        return endpoint.as_dict()

    @_mlflow_errors
    def update_endpoint(self, endpoint, config=None):
        """Change traffic ("blue=90,green=10"), mirror ("green=10" or "none"), description."""
        options = dict(config or {})
        if "traffic" in options:
            options["traffic"] = _weights(options["traffic"])
        if "mirror" in options:
            mirror = options["mirror"]
            if mirror is None or str(mirror).strip().lower() in ("", "none"):
                options["mirror"] = None
            elif not isinstance(mirror, list | tuple):
                ((name, percent),) = _weights(mirror).items()
                options["mirror"] = (name, percent)
        return self.target.update_endpoint(endpoint, options).as_dict()

    @_mlflow_errors
    def delete_endpoint(self, endpoint):
        """Stop the endpoint's servers and delete it with its deployments. Idempotent."""
        self.target.delete_endpoint(endpoint)

    @_mlflow_errors
    def list_endpoints(self):
        return [e.as_dict() for e in self.target.list_endpoints()]

    @_mlflow_errors
    def get_endpoint(self, endpoint):
        return self.target.get_endpoint(endpoint).as_dict()
