"""What AppTest page tests that predict share: caches cleared around each test, and the
process-wide prediction worker stopped once at the end of the module.

Import the two fixtures into a test module to switch them on for it.
"""

from __future__ import annotations

import pytest

from components import services


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
