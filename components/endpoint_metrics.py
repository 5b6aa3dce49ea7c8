"""Per-deployment requests, errors and latency from an endpoint's front, refreshed while open.

The front keeps totals since it started, latency percentiles over a recent window, and a
history of the last hour in 10-second buckets per deployment; the charts are drawn from that
history, so requests made before the tab was opened show too (a front started again begins a
new history).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from components import services
from deploystudio.deployment.base import Capability
from deploystudio.errors import DeployStudioError

REFRESH_SECONDS = 2.0
PERCENTILE_COLUMNS = ("p50", "p90", "p99")
SERIES_COLUMNS = ["time", "deployment", "requests/s", "errors/s", *PERCENTILE_COLUMNS]


def counters_frame(deployments: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per deployment: what the front counted since it started."""
    rows = []
    for name, counters in deployments.items():
        latency = counters.get("latency_ms", {})
        rows.append(
            {
                "deployment": name,
                "state": counters.get("state", ""),
                "requests": counters.get("requests", 0),
                "mirrored": counters.get("mirrored", 0),
                "errors 4xx": counters.get("errors_4xx", 0),
                "errors 5xx": counters.get("errors_5xx", 0),
                **{f"{p} ms": latency.get(p) for p in PERCENTILE_COLUMNS},
            }
        )
    columns = ["deployment", "state", "requests", "mirrored", "errors 4xx", "errors 5xx"]
    return pd.DataFrame(rows, columns=columns + [f"{p} ms" for p in PERCENTILE_COLUMNS])


def history_frame(
    deployments: Mapping[str, Mapping[str, Any]], bucket_seconds: float, now: datetime
) -> pd.DataFrame:
    """One row per deployment and time bucket from the front's stored history, from the
    oldest bucket any deployment has to `now`: rates per second, 0 for a bucket without
    requests (the front keeps only buckets that saw one), latency percentiles where there were
    requests."""
    buckets = {
        name: {datetime.fromisoformat(b["at"]): b for b in counters.get("history", [])}
        for name, counters in deployments.items()
    }
    starts = [at for by_start in buckets.values() for at in by_start]
    if not starts:
        return pd.DataFrame(columns=SERIES_COLUMNS)
    grid = pd.date_range(min(starts), now, freq=pd.Timedelta(seconds=bucket_seconds))
    rows = []
    for name, by_start in buckets.items():
        for at in grid:
            bucket = by_start.get(at.to_pydatetime())
            seconds = float(bucket["seconds"]) if bucket else bucket_seconds
            rows.append(
                {
                    "time": at,
                    "deployment": name,
                    "requests/s": bucket["requests"] / seconds if bucket else 0.0,
                    "errors/s": bucket["errors"] / seconds if bucket else 0.0,
                    **{p: bucket.get(p) if bucket else None for p in PERCENTILE_COLUMNS},
                }
            )
    return pd.DataFrame(rows, columns=SERIES_COLUMNS)


def _figures(frame: pd.DataFrame) -> list[go.Figure]:
    """Requests/s, errors/s and latency percentiles over time, one colour per deployment.

    Built with graph_objects: plotly express took about 0.6 s for the three on this machine,
    longer than the refresh allows without the charts looking stale.
    """
    requests, errors, latency = go.Figure(), go.Figure(), go.Figure()
    colours = px.colors.qualitative.Plotly
    for number, (name, rows) in enumerate(frame.groupby("deployment", sort=False)):
        colour = colours[number % len(colours)]
        line = {"color": colour}
        requests.add_trace(go.Scatter(x=rows["time"], y=rows["requests/s"], name=name, line=line))
        errors.add_trace(go.Scatter(x=rows["time"], y=rows["errors/s"], name=name, line=line))
        for percentile, dash in zip(PERCENTILE_COLUMNS, ("solid", "dot", "dash"), strict=True):
            latency.add_trace(
                go.Scatter(
                    x=rows["time"],
                    y=rows[percentile],
                    name=f"{name} {percentile}",
                    line={"color": colour, "dash": dash},
                )
            )
    titles = ("Requests / s", "Errors / s", "Latency (ms)")
    for figure, title in zip((requests, errors, latency), titles, strict=True):
        figure.update_layout(
            title=title,
            height=300,
            margin={"l": 10, "r": 10, "t": 40, "b": 10},
            legend={"orientation": "h", "y": -0.25},
        )
        figure.update_xaxes(tickformat="%H:%M:%S")
        figure.update_yaxes(rangemode="tozero")
    return [requests, errors, latency]


def _front_view(endpoint_name: str) -> dict[str, Any] | str:
    """The endpoint's metrics document, or why there is none."""
    target = services.endpoint_target()
    if not target.supports(Capability.METRICS):
        return "This target does not report metrics here."
    try:
        return target.get_metrics(endpoint_name)
    except DeployStudioError as exc:
        return str(exc)


def front_totals(endpoint_name: str) -> tuple[int, float] | None:
    """(requests since the endpoint's front started, seconds since then), or None when the
    front cannot be read."""
    view = _front_view(endpoint_name)
    if isinstance(view, str):
        return None
    return int(view.get("requests", 0)), float(view.get("uptime_seconds", 0))


@st.fragment(run_every=REFRESH_SECONDS)
def render_metrics(endpoint_name: str) -> None:
    view = _front_view(endpoint_name)
    if isinstance(view, str):
        st.info(view)
        return
    deployments = view.get("deployments", {})
    st.caption(
        f"Since the front started {view.get('uptime_seconds', 0):.0f} s ago: "
        f"{view.get('requests', 0)} request(s). Refreshed every {REFRESH_SECONDS:.0f} s; "
        "latency percentiles cover the last 1,000 requests (5 minutes at most); the charts "
        "show the last hour as the front recorded it."
    )
    st.dataframe(counters_frame(deployments), hide_index=True, key=f"metrics_{endpoint_name}")
    if "history_bucket_seconds" not in view:
        # Fronts outlive the app: one started before fronts kept a history has none to chart.
        st.caption("This endpoint's front keeps no history yet: restart it for the charts.")
        return
    bucket_seconds = float(view["history_bucket_seconds"])
    frame = history_frame(deployments, bucket_seconds, pd.Timestamp.now(tz="UTC"))
    if frame.empty:
        if deployments:
            st.caption("No requests yet: the charts start with the first one.")
        return
    # The server's local time on the axis, as every other time the app shows (deploystudio.times).
    local_zone = datetime.now().astimezone().tzinfo
    frame["time"] = frame["time"].dt.tz_convert(local_zone).dt.tz_localize(None)
    columns = st.columns(3)
    for number, (column, figure) in enumerate(zip(columns, _figures(frame), strict=True)):
        # A stable key updates the chart in place on each refresh instead of redrawing it.
        column.plotly_chart(figure, width="stretch", key=f"metrics_{endpoint_name}_{number}")
