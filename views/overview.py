"""Overview, the app's home: the registry at a glance, live endpoints with health and traffic,
batch jobs, recent activity in plain words, and the next step for each."""

import streamlit as st

from components import services
from components.endpoint_metrics import front_totals
from components.endpoint_tables import history_frame
from components.overview_panels import (
    endpoints_health_frame,
    jobs_overview_frame,
    registry_figure,
    traffic_figure,
)
from deploystudio.deployment.batch.jobs import list_batch_jobs
from deploystudio.deployment.batch.records import JobState
from deploystudio.errors import DeployStudioError
from deploystudio.overview import endpoint_health, next_steps

RECENT_JOBS = 5
RECENT_ACTIVITY = 10
PAGES = {
    "browse": "views/browse.py",
    "deploy": "views/deploy.py",
    "endpoints": "views/endpoints.py",
    "batch": "views/batch.py",
}

st.title("Deploy Studio")
st.caption("From MLflow models to running endpoints: where things stand now.")
settings = services.get_settings()

try:
    with st.spinner("Reading the registry…"):
        facts = services.registry_overview(settings.registry_uri)
except DeployStudioError as exc:
    st.error(str(exc))
    st.stop()
target = services.local_endpoints().target
endpoints = endpoint_health(
    target,
    {
        e.name: totals
        for e in target.list_endpoints()
        if (totals := front_totals(e.name)) is not None
    },
)
jobs = list_batch_jobs(settings, limit=50)
running_jobs = [j for j in jobs if j.state in (JobState.QUEUED, JobState.RUNNING)]

at_least = "" if facts.complete else "≥ "
models_col, versions_col, aliases_col, endpoints_col, jobs_col = st.columns(5)
models_col.metric("Models", f"{at_least}{len(facts.models)}", border=True)
versions_col.metric("Versions", f"{at_least}{facts.versions}", border=True)
aliases_col.metric("Aliases", f"{at_least}{facts.aliases}", border=True)
endpoints_col.metric(
    "Endpoints healthy",
    f"{sum(e.healthy for e in endpoints)} of {len(endpoints)}",
    border=True,
)
jobs_col.metric("Batch jobs running", len(running_jobs), border=True)

st.subheader("Next steps")
steps = next_steps(facts, endpoints, jobs[:RECENT_JOBS])
if not steps:
    st.success("Nothing waiting: every champion is served and every endpoint is healthy.")
for step in steps:
    st.page_link(
        PAGES[step.page], label=step.text, icon=":material/arrow_forward:", query_params=step.query
    )

registry_col, traffic_col = st.columns(2)
with registry_col:
    if facts.models:
        st.plotly_chart(registry_figure(facts), width="stretch", key="overview_registry")
with traffic_col:
    if endpoints:
        st.plotly_chart(traffic_figure(endpoints), width="stretch", key="overview_traffic")

st.subheader("Endpoints")
if endpoints:
    st.dataframe(
        endpoints_health_frame(endpoints),
        hide_index=True,
        key="overview_endpoints",
        column_config={
            "requests/s": st.column_config.NumberColumn(
                format="%.2f", help="Average since the endpoint's front started"
            ),
            "serves": st.column_config.TextColumn(width="medium"),
        },
    )
else:
    st.caption("No local endpoints yet.")

st.subheader("Batch jobs")
shown_jobs = running_jobs + [j for j in jobs if j not in running_jobs][:RECENT_JOBS]
if shown_jobs:
    st.dataframe(
        jobs_overview_frame(shown_jobs),
        hide_index=True,
        key="overview_jobs",
        column_config={
            "job": st.column_config.LinkColumn("job", display_text=r"batch\?job=(.*)"),
            "progress": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0),
            "seconds": st.column_config.NumberColumn("duration (s)", format="%.1f"),
        },
    )
else:
    st.caption("No batch jobs yet.")

st.subheader("Recent activity")
activity = target.store.history(limit=RECENT_ACTIVITY)
if activity:
    st.dataframe(
        history_frame(activity),
        hide_index=True,
        key="overview_activity",
        column_config={"after": st.column_config.TextColumn(width="large")},
    )
else:
    st.caption("Nothing has changed yet.")
