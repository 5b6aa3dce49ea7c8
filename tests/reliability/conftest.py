"""Settings shared by the reliability suites: case counts, the figures table, the final scan.

The default run stays fast enough for `make test`; RELIABILITY_LONG=1 (set by
`make reliability`) raises every generated-case count to the issue's figures.
"""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import pytest
from hypothesis import HealthCheck, settings

from deploystudio.config import Settings
from tests.conftest import settings_for
from tests.reliability.fault_support import SLEEPY_MODEL

LONG = os.environ.get("RELIABILITY_LONG", "") not in ("", "0")
SECRET_SCAN_MODULE = "test_secret_scan.py"

# Examples per generated test. No example database: the runs must not write into the repository,
# and a failure prints the shrunk input (and @reproduce_failure) anyway.
settings.register_profile(
    "reliability",
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "reliability-long",
    max_examples=600,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = "reliability-long" if LONG else "reliability"


def examples(default: int, long: int) -> settings:
    """Hypothesis settings for one test: `default` examples, `long` in the long run."""
    return settings(settings.get_profile(PROFILE), max_examples=long if LONG else default)


# The fault suites' shared setup. Each module names its own studio folder with a
# module-scoped `home` fixture, so that suites never share records, servers or ports.


@pytest.fixture(scope="module")
def local_settings(home: Path, settings: Settings, seeded) -> Settings:
    """Settings for the module's own studio folder, on the session's seeded registry."""
    return settings_for(home, MLFLOW_TRACKING_URI=settings.tracking_uri)


@pytest.fixture(scope="module")
def sleepy_model(home: Path) -> Path:
    """The sleepy model (fault_support.SLEEPY_MODEL) saved in the module's folder."""
    code = home / "sleepy.py"
    code.write_text(SLEEPY_MODEL)
    mlflow.pyfunc.save_model(str(home / "sleepy-model"), python_model=str(code))
    return home / "sleepy-model"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "reliability: the reliability and security suites")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the suites, and run the secret scan after every other test of the session, so that
    it reads the logs of the whole run (the other suites' and the rest of the test suite's)."""
    here = Path(__file__).parent
    scan = []
    for item in items:
        if Path(item.fspath).is_relative_to(here):
            item.add_marker(pytest.mark.reliability)
        if Path(item.fspath).name == SECRET_SCAN_MODULE:
            scan.append(item)
    for item in scan:
        items.remove(item)
        # An xdist worker cannot run it after the other workers' tests: `make test` runs it
        # in a second session over the first one's folders (SECRET_SCAN_ROOT).
        if not hasattr(config, "workerinput"):
            items.append(item)
    if scan and hasattr(config, "workerinput"):
        config.hook.pytest_deselected(items=scan)
