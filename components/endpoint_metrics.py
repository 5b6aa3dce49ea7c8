"""Per-deployment requests, errors and latency from an endpoint's front, refreshed while open.

The front keeps totals since it started and latency percentiles over a recent window; the page
samples them every few seconds into a short series per endpoint (bounded, in session state) to
draw rates and latency over time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from components import services
from deploystudio.deployment.base import Capability
from deploystudio.errors import DeployStudioError

REFRESH_SECONDS = 2.0
# Five minutes of samples at one every two seconds.
MAX_SAMPLES = 150
PERCENTILE_COLUMNS = ("p50", "p90", "p99")
Sample = tuple[datetime, dict[str, dict[str, Any]]]


def series_key(endpoint: str) -> str:
    return f"endpoint_metrics_{endpoint}"


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


def series_frame(samples: Iterable[Sample]) -> pd.DataFrame:
    """One row per sample and deployment, with request and error rates since the last sample
    (0 when the front restarted and its totals went back to zero)."""
    rows: list[dict[str, Any]] = []
    previous: dict[str, tuple[datetime, int, int]] = {}
    for at, deployments in samples:
        for name, counters in deployments.items():
            requests = int(counters.get("requests", 0))
            errors = int(counters.get("errors_4xx", 0)) + int(counters.get("errors_5xx", 0))
            rate = error_rate = 0.0
            if name in previous:
                then, before, errors_before = previous[name]
                seconds = (at - then).total_seconds()
                if seconds > 0 and requests >= before:
                    rate = (requests - before) / seconds
                    error_rate = max(0, errors - errors_before) / seconds
            previous[name] = (at, requests, errors)
            latency = counters.get("latency_ms", {})
            rows.append(
                {
                    "time": at,
                    "deployment": name,
                    "requests/s": rate,
                    "errors/s": error_rate,
                    **{p: latency.get(p) for p in PERCENTILE_COLUMNS},
                }
            )
    columns = ["time", "deployment", "requests/s", "errors/s", *PERCENTILE_COLUMNS]
    return pd.DataFrame(rows, columns=columns)


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
    samples: deque[Sample] = st.session_state.setdefault(
        series_key(endpoint_name), deque(maxlen=MAX_SAMPLES)
    )
    samples.append((datetime.now(UTC), deployments))
    st.caption(
        f"Since the front started {view.get('uptime_seconds', 0):.0f} s ago: "
        f"{view.get('requests', 0)} request(s). Refreshed every {REFRESH_SECONDS:.0f} s; "
        "latency percentiles cover the last 1,000 requests (5 minutes at most)."
    )
    st.dataframe(counters_frame(deployments), hide_index=True, key=f"metrics_{endpoint_name}")
    if deployments and len(samples) > 1:
        columns = st.columns(3)
        figures = _figures(series_frame(samples))
        for number, (column, figure) in enumerate(zip(columns, figures, strict=True)):
            # A stable key updates the chart in place on each refresh instead of redrawing it.
            column.plotly_chart(figure, width="stretch", key=f"metrics_{endpoint_name}_{number}")
    elif deployments:
        st.caption("The charts start with the next sample.")
