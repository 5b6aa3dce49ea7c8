"""Inspect one model version: deployability report, signature, example, environment, files.
A version of an Azure ML workspace's registry (?source=azure, from Browse) is downloaded into
the cache and inspected as the MLflow model folder it is."""

import streamlit as st

from components import services
from components.environment_plan import render_environment_plan
from components.lineage_panel import render_lineage
from components.model_address import model_uri_input
from components.model_details import (
    render_environment,
    render_flavors,
    render_input_example,
    render_run,
)
from components.registry_source import AZURE, PICKER_KEY, chosen_source
from components.report import render_report
from components.signature import render_signature
from components.tables import artifacts_frame
from deploystudio.errors import DeployStudioError
from deploystudio.inspection import format_bytes

st.title("Inspect a model")
settings = services.get_settings()
on_azure = st.query_params.get(PICKER_KEY) == AZURE
try:
    if on_azure:
        source = chosen_source()
        name, number = st.query_params.get("model"), st.query_params.get("version")
        if source is None:
            st.error("Set the Azure ML workspace on the Azure ML page to inspect its models.")
            st.stop()
        if not name or not number:
            st.info("Open a version of the workspace's models from Browse models.")
            st.stop()
        with st.spinner("Downloading the version from the Azure ML workspace…"):
            inspection = services.version_inspection(source, name, number)
    else:
        entered = model_uri_input("Open a version from Browse models, or enter a model URI above.")
        with st.spinner("Reading the model's metadata…"):
            inspection = services.inspection(settings.registry_uri, entered)
except DeployStudioError as exc:
    st.error(str(exc))
    st.stop()

version = inspection.version
if version is not None:
    st.subheader(f"{version.name} · version {version.version}")
    meta = [f"status {version.status}"]
    if version.created:
        meta.append(f"registered {version.created:%Y-%m-%d %H:%M} UTC")
    registered_by = version.user_id or (inspection.run.user_id if inspection.run else None)
    meta.append(f"by {registered_by or 'unknown'}")
    if version.aliases:
        meta.append("aliases " + ", ".join(version.aliases))
    st.caption(" · ".join(meta))
    if version.description:
        st.write(version.description)
    st.page_link(
        "views/browse.py",
        label=f"All versions of {version.name}",
        icon=":material/arrow_back:",
        query_params={"model": version.name, **({PICKER_KEY: AZURE} if on_azure else {})},
    )
else:
    st.subheader(inspection.resolved_uri)
created = inspection.created[:16] if inspection.created else "unknown"
st.caption(
    f"MLflow {inspection.mlflow_version or 'unknown'} · created {created}"
    f" · {format_bytes(inspection.total_size_bytes)}"
)

if on_azure:
    # Predict, Customize and Deploy read the MLflow registry's models:/ URIs (not Azure's yet).
    st.caption(
        f"Registered in the Azure ML workspace; downloaded to {inspection.resolved_uri}. Deploy "
        "it to a local endpoint with `deploystudio deploy ENDPOINT --deployment NAME --model "
        f"{inspection.resolved_uri}`."
    )
else:
    preview_link, customize_link, deploy_link = st.columns(3)
    preview_link.page_link(
        "views/predict.py",
        label="Preview predictions",
        icon=":material/play_arrow:",
        query_params=st.query_params.to_dict(),
    )
    customize_link.page_link(
        "views/customize.py",
        label="Customize inference",
        icon=":material/tune:",
        query_params=st.query_params.to_dict(),
    )
    if version is not None:  # the Deploy page deploys registered versions
        deploy_link.page_link(
            "views/deploy.py",
            label="Deploy to an endpoint",
            icon=":material/rocket_launch:",
            query_params={"model": version.name, "version": version.version},
        )


st.markdown("#### Deployability report")
render_report(inspection.report)

tabs = st.tabs(
    ["Signature", "Input example", "Flavors", "Environment", "Artifacts", "Source run", "Lineage"]
)
with tabs[0]:
    render_signature(inspection.signature)
with tabs[1]:
    render_input_example(
        inspection.input_example, inspection.input_example_params, inspection.input_example_error
    )
with tabs[2]:
    render_flavors(inspection.flavors)
with tabs[3]:
    render_environment_plan(inspection, settings)
    render_environment(inspection.environment)
with tabs[4]:
    if inspection.artifacts_truncated:
        st.warning("This model has many files; the listing shows the first ones only.")
    st.dataframe(artifacts_frame(inspection.artifacts), hide_index=True)
with tabs[5]:
    render_run(inspection.run, version.run_id if version else None)
with tabs[6]:
    if version is None:
        st.info("Lineage is kept for registered versions: open one from Browse models.")
    else:
        render_lineage(version)
