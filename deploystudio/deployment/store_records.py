"""What a deployment store record may hold, and how a row becomes a record.

Checks on values before they are written (auth mode, tags, a deployment's configuration, state
transitions) and the conversions between SQLite rows and the records of deployment/base.py.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from deploystudio.deployment.base import (
    ALLOWED_TRANSITIONS,
    AuthMode,
    Deployment,
    DeploymentState,
    Runtime,
    local_auth_mode,
)
from deploystudio.deployment.store_file import now
from deploystudio.errors import DeploymentConfigError, StateTransitionError

ENV_SETTING = "environment_variables"


def quoted(names: list[str]) -> str:
    """Names for a message: 'a', 'b' (or none)."""
    listed = ", ".join(repr(n) for n in names)
    return listed or "none"


def checked_auth_mode(value: AuthMode | str) -> AuthMode:
    # The store holds local endpoints only (Azure records live in their own tables): a token
    # mode here would be an endpoint the front treats as keyless, so it is refused here too.
    return local_auth_mode(value)


def tag_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise DeploymentConfigError(f"Tags must be a mapping of names to values, not {value!r}.")
    return {str(k): str(v) for k, v in value.items()}


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def deployment_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a deployment's model URI, runtime, bundle and settings; return plain values."""
    model_uri = config["model_uri"]
    if not isinstance(model_uri, str) or not model_uri.strip():
        raise DeploymentConfigError("A deployment needs a model URI, e.g. 'models:/name/1'.")
    try:
        runtime = Runtime(config["runtime"])
    except ValueError:
        choices = ", ".join(repr(r.value) for r in Runtime)
        raise DeploymentConfigError(
            f"Unknown runtime {config['runtime']!r}: choose one of {choices}."
        ) from None
    bundle = config["bundle"]
    if bundle is not None:
        parts = bundle.split(":") if isinstance(bundle, str) else []
        if len(parts) != 2 or not all(p.strip() for p in parts):
            raise DeploymentConfigError(
                f"Scoring bundle {bundle!r} must be written name:version, e.g. 'my-score:1'."
            )
    raw_settings = config["settings"] or {}
    if not isinstance(raw_settings, Mapping):
        raise DeploymentConfigError(
            f"Deployment settings must be a mapping of names to values, not {raw_settings!r}."
        )
    settings = dict(raw_settings)
    env = settings.get(ENV_SETTING, [])
    # Values of environment variables may be secrets; the store keeps their names only and the
    # server reads the values from its environment when it starts.
    if not isinstance(env, list | tuple) or not all(
        isinstance(n, str) and _ENV_NAME.fullmatch(n) for n in env
    ):
        raise DeploymentConfigError(
            f"Setting {ENV_SETTING!r} must list variable names only (e.g. ['API_URL']), never "
            "values: values are read from the environment when the server starts."
        )
    try:
        json.dumps(settings)
    except (TypeError, ValueError) as exc:
        raise DeploymentConfigError(
            f"Deployment settings must be plain JSON values (numbers, text, lists): {exc}."
        ) from None
    return {
        "model_uri": model_uri,
        "runtime": runtime.value,
        "bundle": bundle,
        "settings": settings,
    }


def check_transition(
    label: str, current: DeploymentState, target: DeploymentState, reason: str | None
) -> None:
    allowed = ALLOWED_TRANSITIONS[current]
    if target not in allowed:
        options = ", ".join(sorted(s.value for s in allowed))
        raise StateTransitionError(
            f"Cannot move {label} from {current.value!r} to {target.value!r}; from "
            f"{current.value!r} it can only go to: {options}."
        )
    if target is DeploymentState.FAILED and not reason:
        raise StateTransitionError(
            f"Cannot mark {label} failed without a reason: say what went wrong."
        )


def update_row(
    conn: sqlite3.Connection,
    table: str,
    values: Mapping[str, Any],
    where: str,
    args: tuple[Any, ...],
) -> None:
    # Column names come from this module only, never from callers.
    assignments = ", ".join(f"{column} = ?" for column in values)
    stamp = "" if "updated_at" in values else ", updated_at = ?"
    extra = () if stamp == "" else (now().isoformat(),)
    conn.execute(
        f"UPDATE {table} SET {assignments}{stamp} WHERE {where}",
        (*values.values(), *extra, *args),
    )


def deployment_from_row(row: sqlite3.Row) -> Deployment:
    return Deployment(
        endpoint_name=row["endpoint_name"],
        name=row["name"],
        model_uri=row["model_uri"],
        runtime=Runtime(row["runtime"]),
        bundle=row["bundle"],
        state=DeploymentState(row["state"]),
        reason=row["reason"],
        log_tail=row["log_tail"],
        pid=row["pid"],
        port=row["port"],
        log_path=row["log_path"],
        created_at=datetime.fromisoformat(row["created_at"]),
        updated_at=datetime.fromisoformat(row["updated_at"]),
        settings=json.loads(row["settings"]),
        environment=json.loads(row["environment"]) if row["environment"] else None,
    )
