"""Deploy Studio entry point: page navigation and the registry connection in the sidebar."""

from pathlib import Path

import streamlit as st

from components import warmup
from components.access import sign_in_gate
from deploystudio.config import load_settings, redact_uri

PRODUCT = "Deploy Studio"
ASSETS = Path(__file__).parent / "assets"
ICON = str(ASSETS / "icon.svg")

st.set_page_config(page_title=PRODUCT, page_icon=ICON, layout="wide")
st.logo(str(ASSETS / "logo.svg"), icon_image=ICON, size="large")
# With sign-in configured in secrets.toml ([auth]), nothing below runs until the user signs in.
sign_in_gate()

# Page scripts live in views/, not pages/: Streamlit treats a pages/ folder beside the main
# script as a legacy multipage app, and on a fresh server a deep link (/inspect?...) then runs
# the page without this script: no sidebar, no layout, "Page not found" (checked on 1.67).
navigation = st.navigation(
    [
        st.Page("views/overview.py", title="Overview", icon=":material/dashboard:", default=True),
        st.Page("views/browse.py", title="Browse models", icon=":material/list:"),
        st.Page("views/inspect.py", title="Inspect", icon=":material/search:"),
        st.Page("views/customize.py", title="Customize", icon=":material/tune:"),
        st.Page("views/predict.py", title="Predict", icon=":material/play_arrow:"),
        st.Page("views/deploy.py", title="Deploy", icon=":material/rocket_launch:"),
        st.Page("views/endpoints.py", title="Endpoints", icon=":material/hub:"),
        st.Page("views/batch.py", title="Batch", icon=":material/dataset:"),
        st.Page("views/azure.py", title="Azure ML", icon=":material/cloud:"),
    ]
)
# Every tab reads "<page> · Deploy Studio": st.navigation alone titles the tab with the page's
# name only, and the product's name went missing.
st.set_page_config(page_title=f"{navigation.title} · {PRODUCT}")

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

if warmup.pending():
    # Only the first runs after start-up: studio.py is still importing the pages' modules
    # (seconds on a small machine); say so rather than leave the main area blank.
    with st.spinner("Starting Deploy Studio…"):
        warmup.wait()
navigation.run()

# After the page has run: once per server process, reconcile local endpoints with the servers
# that outlived the last run (in the background; imported late for the same reason as above).
from components.services import local_endpoints  # noqa: E402

local_endpoints()
