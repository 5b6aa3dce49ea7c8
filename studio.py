"""What `make run` starts: app.py behind a Host allow list.

    .venv/bin/streamlit run studio.py --server.port 8501

Run alone, the app has one user who may do everything, custom model code included, so a web page
must not reach it through DNS rebinding (its own name resolving to 127.0.0.1: the browser then
sends `Host: evil.example` with a matching Origin, which Streamlit accepted, WebSocket included).
Requests whose Host is not in the settings' `allowed_hosts` (localhost names by default; the
port is ignored) get 400 on HTTP and a refused WebSocket upgrade.

How: `st.App` (public since Streamlit 1.5x; `streamlit run` detects the instance and serves it
with uvicorn) takes Starlette middleware that runs before Streamlit's own routes, and
Starlette's TrustedHostMiddleware checks the Host of HTTP requests and WebSocket upgrades
alike. Streamlit's own `server.allowedHosts` covers WebSockets only.
`tests/test_allowed_hosts.py` checks it on a real `streamlit run studio.py`.

At start-up (st.App's lifespan hook) the first pages' modules are imported in the background
(components/warmup.py), so that the first visitor does not wait for MLflow's import.
"""

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import streamlit as st
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware

# app.py's own imports, here before the warm-up thread starts, so that the first page run and
# the warm-up never import the same modules at once.
import components.access  # noqa: F401
from components import warmup
from deploystudio.config import load_settings


def _patterns() -> list[str]:
    hosts = list(load_settings().allowed_hosts)
    for host in hosts:
        # Starlette asserts this shape; say which setting is wrong instead.
        if "*" in host[1:] or (host.startswith("*") and host != "*" and not host.startswith("*.")):
            sys.exit(
                f"allowed_hosts: {host!r} is not a host name, '*.example.com' or '*'. Fix "
                "DEPLOYSTUDIO_ALLOWED_HOSTS or [deploystudio] allowed_hosts in secrets.toml."
            )
    return hosts


@asynccontextmanager
async def _lifespan(_app: st.App) -> AsyncIterator[None]:
    warmup.start()
    yield


app = st.App(
    "app.py",
    lifespan=_lifespan,
    middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=_patterns(), www_redirect=False)],
)
