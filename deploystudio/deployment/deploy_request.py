"""One deploy as a user asks for it: a model version, maybe a new endpoint, a deployment, and
whether it takes all traffic once ready. The steps run in one call, in Azure's order (endpoint,
then deployment at 0%, then traffic), and stop at the first that fails, so the Deploy page can
run them as a single operation and show its progress lines.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from deploystudio.deployment.adaptive_batching import (
    MAX_BATCH_SIZE,
    MAX_WAIT_MS,
    BatchSettings,
)
from deploystudio.deployment.base import (
    AuthMode,
    Deployment,
    DeploymentState,
    DeploymentTarget,
    Endpoint,
    Runtime,
)
from deploystudio.deployment.local.servers import MAX_INSTANCES
from deploystudio.deployment.names import MAX_LENGTH, MIN_LENGTH, validate_name
from deploystudio.errors import EndpointFrontError, InvalidNameError, ScoringServerError

Progress = Callable[[str], None]

# Names offered for the next deployment of an endpoint: Azure's docs use blue, then green.
DEPLOYMENT_NAMES = ("blue", "green", "yellow", "red", "purple", "orange")


@dataclass(frozen=True)
class DeployRequest:
    """What to deploy where. `new_endpoint` says whether `endpoint` is created first."""

    model_uri: str
    endpoint: str
    deployment: str
    new_endpoint: bool
    auth_mode: AuthMode = AuthMode.KEY
    runtime: Runtime = Runtime.AZUREML
    # A saved scoring bundle as "name:version" (azureml runtime only), or None.
    bundle: str | None = None
    instance_count: int = 1
    all_traffic: bool = False
    # Which environment the server runs in: auto, model or app (deploystudio.environments).
    environment: str = "app"
    # Adaptive batching in the endpoint's front (adaptive_batching.py); 1 is off.
    max_batch_size: int = 1
    max_wait_ms: int = 0

    @property
    def subject(self) -> str:
        """The operation subject: one change to an endpoint at a time."""
        return f"endpoint {self.endpoint}"

    def config(self) -> dict:
        """The deployment config `LocalTarget.create_deployment` takes."""
        config: dict = {
            "runtime": self.runtime.value,
            "settings": {"instance_count": self.instance_count},
        }
        batching = BatchSettings(self.max_batch_size, self.max_wait_ms)
        config["settings"].update(batching.as_settings())
        if self.environment != "app":
            config["settings"]["environment"] = self.environment
        if self.bundle:
            config["bundle"] = self.bundle
        return config


def request_problems(
    request: DeployRequest, endpoints: Iterable[Endpoint], deployments: Iterable[Deployment]
) -> list[str]:
    """Why `request` cannot be submitted as it stands (empty when it can), each message saying
    what to change. `endpoints` and `deployments` are the store's current records."""
    problems = []
    for name, what in ((request.endpoint, "endpoint"), (request.deployment, "deployment")):
        try:
            validate_name(name, what)
        except InvalidNameError as exc:
            problems.append(str(exc))
    # The store compares names ignoring case, as Azure does.
    by_name = {e.name.lower(): e for e in endpoints}
    existing = by_name.get(request.endpoint.lower())
    if request.new_endpoint and existing is not None:
        problems.append(
            f"Endpoint {existing.name!r} already exists: choose another name, or add the "
            "deployment to it as an existing endpoint."
        )
    if not request.new_endpoint and existing is None:
        problems.append(
            f"There is no endpoint named {request.endpoint!r}: create it as a new endpoint."
        )
    if existing is not None and not request.new_endpoint:
        taken = {d.name.lower() for d in deployments if d.endpoint_name == existing.name}
        if request.deployment.lower() in taken:
            problems.append(
                f"Endpoint {existing.name!r} already has a deployment named "
                f"{request.deployment!r}: choose another name (update or delete that one on "
                "the Endpoints page)."
            )
    if request.bundle and request.runtime is not Runtime.AZUREML:
        problems.append(
            "A scoring bundle runs in Azure ML's inference server: choose the azureml runtime, "
            "or no bundle."
        )
    if not 1 <= request.instance_count <= MAX_INSTANCES:
        problems.append(f"The instance count must be from 1 to {MAX_INSTANCES}.")
    if not 1 <= request.max_batch_size <= MAX_BATCH_SIZE:
        problems.append(f"The max batch size must be from 1 (off) to {MAX_BATCH_SIZE}.")
    if not 0 <= request.max_wait_ms <= MAX_WAIT_MS:
        problems.append(f"The max wait must be from 0 to {MAX_WAIT_MS} ms.")
    return problems


def free_deployment_name(taken: Iterable[str]) -> str:
    """The first of blue, green, ... that `taken` does not hold (ignoring case)."""
    used = {name.lower() for name in taken}
    for name in DEPLOYMENT_NAMES:
        if name not in used:
            return name
    number = 2
    while f"deployment-{number}" in used:
        number += 1
    return f"deployment-{number}"


def suggest_endpoint_name(model_name: str, taken: Iterable[str]) -> str:
    """A valid, free endpoint name made from a model name (`iris_classifier` -> `iris-classifier`,
    then `iris-classifier-2`, ...): registry names allow characters Azure's names do not."""
    used = {name.lower() for name in taken}
    words = re.findall(r"[a-z0-9]+", model_name.lower())
    base = "-".join(words) or "endpoint"
    if not base[0].isalpha():
        base = f"ep-{base}"
    base = base.ljust(MIN_LENGTH, "0")
    number = 1
    while True:
        suffix = "" if number == 1 else f"-{number}"
        name = base[: MAX_LENGTH - len(suffix)].rstrip("-") + suffix
        if name.lower() not in used:
            return name
        number += 1


def deploy(
    target: DeploymentTarget,
    request: DeployRequest,
    progress: Progress,
    timeout_seconds: float | None = None,
) -> Deployment:
    """Create the endpoint if new, start the deployment, then give it all traffic if asked.
    The Deploy page, the Endpoints page (a deployment added to an endpoint) and
    `deploystudio deploy` all deploy through this, over the target interface.

    Returns the ready deployment; `timeout_seconds` bounds its start (the target's default
    when None). Raises EndpointFrontError when a new endpoint does not start,
    ScoringServerError when the deployment does not (its record keeps the reason and the log
    tail), and the target's errors (NameTakenError, ...) as they come.
    """
    if request.new_endpoint:
        progress(f"Creating endpoint {request.endpoint} ({request.auth_mode.value} auth)")
        endpoint = target.create_endpoint(
            request.endpoint, {"auth_mode": request.auth_mode.value}, progress=progress
        )
        if endpoint.state is not DeploymentState.READY:
            raise EndpointFrontError(
                f"Endpoint {endpoint.name} did not start: {_sentence(endpoint.reason)} Restart "
                "it on the Endpoints page, or delete it and deploy again."
            )
    # A start timeout is the local target's own option (the CLI's --timeout): passed only when
    # asked, so that any target of the interface takes this call.
    extra = {} if timeout_seconds is None else {"timeout_seconds": timeout_seconds}
    record = target.create_deployment(
        request.deployment,
        request.model_uri,
        request.endpoint,
        request.config(),
        progress=progress,
        **extra,
    )
    if record.state is not DeploymentState.READY:
        raise ScoringServerError(
            f"Deployment {record.endpoint_name}/{record.name} did not start: "
            f"{_sentence(record.reason)} Its server log tail is kept with it. Fix the model or "
            "scoring bundle, then restart or delete the deployment on the Endpoints page."
        )
    if request.all_traffic:
        target.update_endpoint(record.endpoint_name, {"traffic": {record.name: 100}})
        progress(f"All traffic of {record.endpoint_name} now goes to {record.name}")
    return record


def _sentence(text: str | None) -> str:
    text = (text or "no reason was recorded").strip()
    return text if text.endswith((".", "!", "?")) else text + "."
