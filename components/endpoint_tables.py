"""Endpoints, deployments and audit entries as tables (pure: records in, DataFrames out)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from deploystudio.deployment.audit_words import describe, value_text
from deploystudio.deployment.base import AuditEntry, Deployment, Endpoint
from deploystudio.times import format_time


def traffic_text(endpoint: Endpoint) -> str:
    """ "blue 90% · green 10% · mirror green 10%" (deployments at 0% left out)."""
    parts = [f"{name} {weight}%" for name, weight in endpoint.traffic.items() if weight]
    if endpoint.mirror:
        parts.append(f"mirror {endpoint.mirror[0]} {endpoint.mirror[1]}%")
    return " · ".join(parts) or "no live traffic"


def endpoints_frame(endpoints: Sequence[Endpoint]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "endpoint": e.name,
                "state": e.state.value,
                "auth": e.auth_mode.value,
                "scoring URI": e.scoring_uri or "",
                "deployments": len(e.traffic),
                "traffic": traffic_text(e),
                "updated": format_time(e.updated_at),
            }
            for e in endpoints
        ],
        columns=["endpoint", "state", "auth", "scoring URI", "deployments", "traffic", "updated"],
    )


def deployments_frame(endpoint: Endpoint, deployments: Sequence[Deployment]) -> pd.DataFrame:
    mirror = endpoint.mirror
    return pd.DataFrame(
        [
            {
                "deployment": d.name,
                "state": d.state.value,
                "traffic %": endpoint.traffic.get(d.name, 0),
                "mirror %": mirror[1] if mirror and mirror[0] == d.name else 0,
                "model URI": d.model_uri,
                "runtime": d.runtime.value + (f" + {d.bundle}" if d.bundle else ""),
                "environment": d.environment_label,
                "port": d.port,
                "pid": d.pid,
                "reason": d.reason or "",
            }
            for d in deployments
        ],
        columns=[
            "deployment",
            "state",
            "traffic %",
            "mirror %",
            "model URI",
            "runtime",
            "environment",
            "port",
            "pid",
            "reason",
        ],
    )


def history_frame(entries: Sequence[AuditEntry]) -> pd.DataFrame:
    """Audit entries as sentences with before and after as plain text, never stored JSON or
    action names ("set_traffic traffic")."""
    return pd.DataFrame(
        [
            {
                "when": format_time(e.at),
                "who": e.actor,
                "what": describe(e),
                "before": value_text(e.previous, e.field),
                "after": value_text(e.new, e.field),
            }
            for e in entries
        ],
        columns=["when", "who", "what", "before", "after"],
    )
