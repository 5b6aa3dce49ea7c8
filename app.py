"""Deploy Studio entry point: page navigation and the registry connection in the sidebar."""

import streamlit as st

from components.services import get_settings, refresh_registry_listings
from deploystudio.config import redact_uri

st.set_page_config(page_title="Deploy Studio", page_icon="🚀", layout="wide")

navigation = st.navigation(
    [
        st.Page("pages/browse.py", title="Browse models", icon=":material/list:", default=True),
        st.Page(
            "pages/inspect_model.py", title="Inspect", icon=":material/search:", url_path="inspect"
        ),
    ]
)

settings = get_settings()
with st.sidebar:
    st.markdown("### Registry")
    if settings.is_embedded_registry:
        st.caption(f"Embedded MLflow store (SQLite) in `{settings.home}`")
    else:
        st.caption(f"MLflow at `{redact_uri(settings.tracking_uri)}`")
    if st.button("Refresh listings", icon=":material/refresh:", help="Re-read the registry now"):
        refresh_registry_listings()

navigation.run()
