"""The overview page's tables and charts (pure: domain records in, DataFrames and figures out)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go

from components.batch_history import job_seconds
from components.endpoint_tables import traffic_text
from deploystudio.deployment.batch.records import BatchJob
from deploystudio.overview import EndpointHealth, RegistryFacts, served_version
from deploystudio.times import format_time

CHART_MARGIN = {"l": 10, "r": 10, "t": 40, "b": 10}


def endpoints_health_frame(endpoints: Sequence[EndpointHealth]) -> pd.DataFrame:
    rows = []
    for health in endpoints:
        served = [s for d in health.deployments if (s := served_version(d)) is not None]
        rows.append(
            {
                "endpoint": health.endpoint.name,
                "health": health.health,
                "traffic": traffic_text(health.endpoint),
                "requests/s": None if health.request_rate is None else health.request_rate,
                "requests": health.requests,
                "serves": ", ".join(
                    f"{s.deployment}: {s.model} "
                    + (f"v{s.version}" if s.version else f"@{s.alias}")
                    for s in served
                ),
                "updated": format_time(health.endpoint.updated_at),
            }
        )
    columns = ["endpoint", "health", "traffic", "requests/s", "requests", "serves", "updated"]
    return pd.DataFrame(rows, columns=columns)


def jobs_overview_frame(jobs: Sequence[BatchJob]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "job": [f"batch?job={job.id}" for job in jobs],
            "state": [job.state.value for job in jobs],
            "model": [job.model_uri + (f" + {job.bundle}" if job.bundle else "") for job in jobs],
            "progress": [job.progress for job in jobs],
            "files": [f"{job.files_done}/{job.files_total}" for job in jobs],
            "started": [format_time(job.started_at or job.created_at) for job in jobs],
            "seconds": [job_seconds(job) for job in jobs],
        },
        columns=["job", "state", "model", "progress", "files", "started", "seconds"],
    )


def traffic_figure(endpoints: Sequence[EndpointHealth]) -> go.Figure:
    """One horizontal bar per endpoint, split by the share each deployment gets."""
    figure = go.Figure()
    names = [h.endpoint.name for h in endpoints]
    deployments = sorted({d for h in endpoints for d, w in h.endpoint.traffic.items() if w})
    for deployment in deployments:
        figure.add_trace(
            go.Bar(
                y=names,
                x=[h.endpoint.traffic.get(deployment, 0) for h in endpoints],
                name=deployment,
                orientation="h",
                text=[
                    f"{deployment} {h.endpoint.traffic.get(deployment, 0)}%"
                    if h.endpoint.traffic.get(deployment)
                    else ""
                    for h in endpoints
                ],
                textposition="inside",
            )
        )
    figure.update_layout(
        title="Live traffic by deployment (%)",
        barmode="stack",
        height=120 + 40 * len(names),
        margin=CHART_MARGIN,
        xaxis={"range": [0, 100]},
        showlegend=False,
    )
    return figure


def registry_figure(facts: RegistryFacts) -> go.Figure:
    """Models by the aliases they carry: how many have a champion, a challenger, none."""
    counts = facts.alias_counts()
    without = sum(1 for m in facts.models if not m.aliases)
    labels = [*sorted(counts, key=lambda a: -counts[a]), "no alias"]
    values = [*(counts[a] for a in labels[:-1]), without]
    figure = go.Figure(go.Bar(x=labels, y=values, text=values, textposition="auto"))
    figure.update_layout(title="Models by alias", height=300, margin=CHART_MARGIN)
    return figure
