"""Inspect's Lineage tab: what a version wraps and what wraps it, its scoring bundles, the
endpoint deployments serving it and the batch jobs that used it, each a link to its page."""

from __future__ import annotations

import streamlit as st

from components import services
from deploystudio.customization.bundles import bundle_store
from deploystudio.customization.wrap_registration import WRAPPED_FROM_TAG
from deploystudio.deployment.batch.jobs import list_batch_jobs
from deploystudio.errors import DeployStudioError
from deploystudio.lineage import VersionLineage, version_lineage
from deploystudio.model_uri import ModelUriKind
from deploystudio.registry import VersionSummary
from deploystudio.times import format_time

# The newest jobs looked at for a version's use (each is one row of the job store).
LINEAGE_JOBS = 200


def read_lineage(version: VersionSummary) -> VersionLineage:
    """Read what the lineage is made from: the registry's wrappers of this model, the saved
    bundles, the target's deployments and the newest batch jobs. A source that cannot be read
    is said on the page and left out, so the rest still shows."""
    settings = services.get_settings()
    wrappers: list[VersionSummary] = []
    try:
        wrappers = services.versions_tagged(
            settings.registry_uri, WRAPPED_FROM_TAG, f"models:/{version.name}"
        )
    except DeployStudioError as exc:
        st.caption(f"The wrappers of this version cannot be listed: {exc}")
    try:
        deployments = services.endpoint_target().list_deployments()
    except DeployStudioError as exc:
        st.caption(f"The deployments cannot be read: {exc}")
        deployments = []
    return version_lineage(
        version,
        wrappers=wrappers,
        bundles=bundle_store(settings).list_bundles(),
        deployments=deployments,
        jobs=list_batch_jobs(settings, limit=LINEAGE_JOBS),
    )


def render_lineage(version: VersionSummary) -> None:
    lineage = read_lineage(version)
    if lineage.empty and not lineage.missing_bundle:
        st.info(
            "No lineage yet: this version wraps nothing, nothing wraps it, no scoring bundle "
            "is written for it, no endpoint serves it and no batch job used it."
        )
        return
    _render_wrapping(lineage)
    _render_bundles(lineage)
    st.markdown("**Served by**")
    if not lineage.serving:
        st.caption("No endpoint deployment serves this version.")
    for served in lineage.serving:
        via = f" (via @{served.alias})" if served.alias else ""
        st.page_link(
            "views/endpoints.py",
            label=f"Endpoint {served.endpoint} · deployment {served.deployment}{via}",
            icon=":material/hub:",
            query_params={"endpoint": served.endpoint, "tab": "Deployments"},
        )
    st.markdown("**Batch jobs**")
    if not lineage.jobs:
        st.caption(f"None of the last {LINEAGE_JOBS} batch jobs used this version.")
    for use in lineage.jobs:
        job = use.job
        via = f" (via {use.via})" if use.via else ""
        bundle = f" + {job.bundle}" if job.bundle else ""
        st.page_link(
            "views/batch.py",
            label=f"Job {job.id} · {job.state.value}{bundle}{via} · "
            f"{format_time(job.started_at or job.created_at)}",
            icon=":material/dataset:",
            query_params={"job": job.id},
        )


def _render_wrapping(lineage: VersionLineage) -> None:
    st.markdown("**Wraps**")
    wraps = lineage.wraps
    kind = f" ({lineage.wrapper_kind})" if lineage.wrapper_kind else ""
    if wraps is not None and wraps.is_registered and wraps.name:
        if wraps.kind is ModelUriKind.REGISTERED_VERSION and wraps.version:
            label, address = f"version {wraps.version}", {"version": wraps.version}
        else:
            label, address = f"@{wraps.alias}", {"alias": wraps.alias or ""}
        st.page_link(
            "views/inspect.py",
            label=f"{wraps.name} {label}{kind}",
            icon=":material/arrow_upward:",
            query_params={"model": wraps.name, **address},
        )
    elif lineage.wraps_uri:
        st.markdown(f"`{lineage.wraps_uri}`{kind}")
    else:
        st.caption("This version wraps no other model.")
    st.markdown("**Wrapped by**")
    if not lineage.wrapped_by:
        st.caption("No registered version wraps this one.")
    for wrapper in lineage.wrapped_by:
        st.page_link(
            "views/inspect.py",
            label=f"{wrapper.name} version {wrapper.version}",
            icon=":material/arrow_downward:",
            query_params={"model": wrapper.name, "version": wrapper.version},
        )


def _render_bundles(lineage: VersionLineage) -> None:
    st.markdown("**Scoring bundles**")
    if lineage.missing_bundle:
        st.warning(
            f"The attached bundle {lineage.missing_bundle} is not saved here any more.",
            icon=":material/warning:",
        )
    if not lineage.bundles:
        st.caption("No scoring bundle is written for this version.")
    for use in lineage.bundles:
        bundle = use.bundle
        notes = ["attached" if use.attached else "written for it", bundle.template]
        notes.append("validated" if bundle.validated else "did not pass validation")
        if bundle.saved_by:
            notes.append(f"saved by {bundle.saved_by}")
        notes.append(format_time(bundle.created_at))
        icon = ":material/check_circle:" if bundle.validated else ":material/warning:"
        st.markdown(f"{icon} `{bundle.label}` · " + " · ".join(notes))
