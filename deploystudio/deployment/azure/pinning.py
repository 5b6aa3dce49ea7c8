"""Azure fidelity (issue 19, part 7): the environment exported with a deployment pins what ran
here. When a local deployment of the model ran in its own environment (built with uv by
`environments`; the deployment's record names it), the exported conda file's pip section lists
exactly the versions installed in it (its `requirements.lock`, which `uv pip sync` installed, no
more, no less), and its Python is the one that environment used, so Azure builds what was
tested locally rather than re-resolving loose pins. A model that ran here in the app's
environment, or never on a local endpoint, is exported as it declares itself."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from deploystudio.deployment.base import Deployment, DeploymentState
from deploystudio.environments import Environment, lookup_key
from deploystudio.errors import InvalidModelUriError
from deploystudio.model_uri import ModelUriKind, parse_model_uri

LOCK_FILE = "requirements.lock"


@dataclass(frozen=True)
class Pinning:
    """What the export pins to: a model environment (None: nothing pinned), and why, in words."""

    environment: Environment | None
    note: str


def _same_model(record_uri: str, model_uri: str) -> bool:
    try:
        ran, exported = parse_model_uri(record_uri), parse_model_uri(model_uri)
    except InvalidModelUriError:
        return False
    if ran.kind is ModelUriKind.LOCAL_FOLDER and exported.kind is ModelUriKind.LOCAL_FOLDER:
        assert ran.local_path is not None and exported.local_path is not None
        return ran.local_path.resolve() == exported.local_path.resolve()
    return ran.uri == exported.uri


def pinned_environment(
    model_uri: str, deployments: Iterable[Deployment], home: Path
) -> Pinning:
    """The environment a local deployment of `model_uri` recorded it ran in (a ready one first,
    then the latest started), as the export's pins. The app's environment is not pinned (it
    holds the app, not the model's stack): the model's own files go to Azure as they are."""
    ran = [d for d in deployments if d.environment and _same_model(d.model_uri, model_uri)]
    if not ran:
        return Pinning(
            None,
            f"Not pinned: no local deployment of {model_uri} recorded its environment. Deploy "
            "it locally with --env model to test, and pin, what Azure will build.",
        )
    ran.sort(key=lambda d: (d.state is DeploymentState.READY, d.updated_at), reverse=True)
    chosen = ran[0]
    label = f"{chosen.endpoint_name}/{chosen.name}"
    key = (chosen.environment or {}).get("key")
    if not key:
        return Pinning(
            None,
            f"Not pinned: the local deployment {label} ran in the app's environment, whose "
            "versions are the app's; the model's own requirements go to Azure as written.",
        )
    environment = lookup_key(home, str(key))
    if environment is None:
        return Pinning(
            None,
            f"Not pinned: the model environment {key} that {label} ran in was removed since "
            "(env prune); restart the deployment to build it again.",
        )
    return Pinning(
        environment,
        f"conda.yaml pins the model environment {key} (Python {environment.python_version}, "
        f"{environment.packages} packages), where the local deployment {label} ran.",
    )


def installed_pins(environment: Environment) -> list[str]:
    """`name==version` of every package installed in the environment."""
    text = (environment.root / LOCK_FILE).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _name(line: str) -> str | None:
    try:
        return canonicalize_name(Requirement(line).name)
    except InvalidRequirement:
        return None


def pin_conda(conda_text: str, environment: Environment) -> str:
    """`conda_text` with its Python set to the environment's and its pip section replaced by the
    environment's exact versions; pip lines for packages the environment lacks (the inference
    server a scoring script needs on Azure, say) are kept after them as they were."""
    document = yaml.safe_load(conda_text) or {}
    pins = installed_pins(environment)
    pinned_names = {_name(pin) for pin in pins}
    dependencies = []
    kept: list[str] = []
    for item in document.get("dependencies") or []:
        if isinstance(item, dict) and "pip" in item:
            kept += [p for p in item["pip"] or [] if _name(str(p)) not in pinned_names]
        elif isinstance(item, str) and item.replace(" ", "").split("=")[0] == "python":
            continue
        else:
            dependencies.append(item)
    python = f"python={environment.python_version}"
    rest = [d for d in dependencies if d != "pip"]
    document["dependencies"] = [python, "pip", *rest, {"pip": [*pins, *kept]}]
    header = (
        f"# Pinned by Deploy Studio to the model environment {environment.key}, where the model "
        "ran locally:\n# the exact versions installed there, and its Python.\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False)
