"""azure-ai-ml online entities as the YAML `az ml ... create -f` takes, shaped like Azure's
examples.

Shared by scoring-bundle zips (customization/bundles.py) and workspace exports (azure_export.py).
The entities' `_to_dict()` is the SDK's own serialiser (what `dump()` writes); it inlines the
conda file, names anonymous environments by hash and gives local folders absolute paths. The Azure
examples reference files relative to the YAML instead, so a YAML stays right after conda.yaml is
edited and the folder can move: those fields are replaced by relative references here, and every
file is loaded back with azure-ai-ml's own loader to prove it accepts it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

ONLINE_ENDPOINT_SCHEMA = (
    "https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json"
)
ONLINE_DEPLOYMENT_SCHEMA = (
    "https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json"
)
# Fields `_to_dict()` always writes that the examples leave out when they hold their defaults.
_DEFAULT_NOISE = {"type": "managed", "app_insights_enabled": False}


def plain(value: Any) -> Any:
    # OrderedDicts -> plain dicts, so yaml.safe_dump accepts them (LIBRARY-NOTES).
    return json.loads(json.dumps(value))


def without_empty(spec: Mapping[str, Any]) -> dict[str, Any]:
    """`spec` without empty dicts, None and "" at any depth (the examples omit them)."""
    cleaned: dict[str, Any] = {}
    for key, value in spec.items():
        if isinstance(value, Mapping):
            value = without_empty(value)
        if value not in ({}, None, ""):
            cleaned[key] = value
    return cleaned


def endpoint_yaml(endpoint: Any) -> str:
    """A ManagedOnlineEndpoint as YAML like the examples' `endpoint.yml`."""
    spec = without_empty(plain(endpoint._to_dict()))
    return yaml.safe_dump({"$schema": ONLINE_ENDPOINT_SCHEMA, **spec}, sort_keys=False)


def deployment_yaml(
    deployment: Any,
    *,
    model: str | Mapping[str, Any] | None = None,
    environment: Mapping[str, Any] | None = None,
    code_configuration: Mapping[str, Any] | None = None,
) -> str:
    """A ManagedOnlineDeployment as YAML like the examples' deployment files.

    `model`, `environment` and `code_configuration`, when given, replace what `_to_dict()` wrote
    (use them for references relative to the YAML's folder).
    """
    spec = plain(deployment._to_dict())
    for key, replacement in (
        ("model", model),
        ("environment", environment),
        ("code_configuration", code_configuration),
    ):
        if replacement is not None:
            spec[key] = plain(replacement)
    for key, default in _DEFAULT_NOISE.items():
        if spec.get(key) == default:
            del spec[key]
    spec = without_empty(spec)
    return yaml.safe_dump({"$schema": ONLINE_DEPLOYMENT_SCHEMA, **spec}, sort_keys=False)


def load_back(path: Path, loader: Callable[..., Any]) -> Any:
    """Load `path` with an azure-ai-ml loader (relative paths resolve against its folder).

    Raises ValueError with the loader's message when azure-ai-ml refuses it; callers turn that
    into their own DeployStudioError.
    """
    try:
        return loader(str(path))
    except Exception as exc:  # azure-ai-ml's ValidationError/ValidationException family
        raise ValueError(str(exc)) from exc
