"""What AppTest page tests share: caches cleared around each test, the process-wide prediction
worker stopped once at the end of the module, pages pointed at a module's own data folder, and
a run that fails on any exception the page raised.

Import the two fixtures into a test module to switch them on for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from components import endpoint_changes, services
from deploystudio.config import Settings
from tests.conftest import REPO_ROOT, settings_for


@contextmanager
def pages_using(home: Path, session_settings: Settings) -> Iterator[Settings]:
    """Point the pages, which read their settings from the environment, at `home` and the
    session's seeded registry; put the environment back afterwards."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEPLOYSTUDIO_HOME", str(home))
        patch.setenv("MLFLOW_TRACKING_URI", session_settings.tracking_uri)
        yield settings_for(home, MLFLOW_TRACKING_URI=session_settings.tracking_uri)


def rerun(at: AppTest) -> AppTest:
    """Run the page and fail on any exception it showed."""
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def clear_app_caches() -> None:
    # Cached functions outlive one AppTest (their module stays imported). The worker is kept:
    # it is the process-wide singleton, stopped once at the end of the module.
    services.get_registry.clear()
    services.refresh_registry_listings()
    services.model_path.clear()
    services.model_signature.clear()


@pytest.fixture(scope="module", autouse=True)
def prediction_worker_stopped_at_the_end():
    yield
    services.prediction_worker().stop()


@pytest.fixture(autouse=True)
def fresh_caches():
    clear_app_caches()
    yield
    clear_app_caches()


def endpoint_page(endpoint: str, tab: str | None, timeout: float, **params: str) -> AppTest:
    """The Endpoints page opened on `endpoint` (and `tab`), run once."""
    at = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=timeout)
    at.switch_page("views/endpoints.py")
    at.query_params["endpoint"] = endpoint
    if tab:
        at.query_params["tab"] = tab
    for name, value in params.items():
        at.query_params[name] = value
    return rerun(at)


def settle_change(at: AppTest, endpoint: str, seconds: float):
    """Wait for the change the page started on `endpoint`, then show its outcome; returns the
    operation."""
    operation_id = at.session_state[endpoint_changes.slot(endpoint)]
    operation = services.local_endpoints().operations.wait(operation_id, seconds)
    assert operation is not None and operation.done, operation
    rerun(at)
    return operation


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)
