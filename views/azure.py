"""Azure ML: the workspace and its connection test, an export folder for CI pipelines (needs no
Azure access), and deployment of a registered model version to a managed online endpoint."""

import streamlit as st

from components.azure_batch_form import render_batch_form
from components.azure_deploy_form import render_deploy_form
from components.azure_export_form import render_export_form
from components.azure_settings import render_connection_test, render_workspace_settings
from components.deploy_form import render_model_choice

st.title("Azure ML")

st.markdown("#### Workspace")
workspace = render_workspace_settings()
if workspace is not None:
    render_connection_test(workspace)

st.markdown("#### Model")
choice = render_model_choice("azure")

export_tab, deploy_tab, batch_tab = st.tabs(["Export for CI", "Deploy to Azure", "Batch endpoint"])
with export_tab:
    render_export_form(choice, workspace)
with deploy_tab:
    if workspace is None:
        st.info("Set the workspace above to deploy; exporting needs no workspace.")
    else:
        render_deploy_form(choice, workspace)
with batch_tab:
    render_batch_form(choice, workspace)
