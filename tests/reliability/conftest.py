"""Settings shared by the reliability suites: case counts, the figures table, the final scan.

The default run stays fast enough for `make test`; RELIABILITY_LONG=1 (set by
`make reliability`) raises every generated-case count to the issue's figures.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.reliability.figures import FIGURES, render

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
        items.append(item)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    rows = FIGURES.as_plain()
    if not rows:
        return
    terminalreporter.section("reliability figures")
    terminalreporter.write_line(render(rows))
    target = os.environ.get("RELIABILITY_FIGURES")
    if target:
        Path(target).write_text(json.dumps(rows, indent=2))
