"""Deploy Studio entry point: page navigation and the registry connection in the sidebar."""

import streamlit as st

from deploystudio.config import load_settings, redact_uri

st.set_page_config(page_title="Deploy Studio", page_icon="🚀", layout="wide")

navigation = st.navigation(
    [
        st.Page("pages/browse.py", title="Browse models", icon=":material/list:", default=True),
        # URL paths come from file names: a url_path that differs from the file name makes
        # Streamlit show "Page not found" on deep links from new sessions (checked on 1.67).
        st.Page("pages/inspect.py", title="Inspect", icon=":material/search:"),
        st.Page("pages/predict.py", title="Predict", icon=":material/play_arrow:"),
    ]
)

settings = load_settings()
with st.sidebar:
    st.markdown("### Registry")
    if settings.is_embedded_registry:
        st.caption(f"Embedded MLflow store (SQLite) in `{settings.home}`")
    else:
        st.caption(f"MLflow at `{redact_uri(settings.tracking_uri)}`")
    if st.button("Refresh listings", icon=":material/refresh:", help="Re-read the registry now"):
        # Imported here: the services pull in MLflow, which the navigation must not wait for.
        from components.services import refresh_registry_listings

        refresh_registry_listings()

navigation.run()
