"""What the screens say right after an action, in a real browser (issue 20, "truthful screens").

One endpoint made through the domain (blue: iris v1 with all traffic, green: iris v2 at 0%),
shared by the tests in file order; the fixture deletes it whatever happened.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from deploystudio.deployment.base import DeploymentState
from deploystudio.deployment.local.target import LocalTarget

pytestmark = pytest.mark.e2e

LOAD_TIMEOUT_MS = 60_000
START_TIMEOUT_SECONDS = 180
ENDPOINT = "e2e-truth"


@pytest.fixture(scope="module")
def target(settings, registry, seeded):
    target = LocalTarget(settings, registry=registry, start_timeout_seconds=START_TIMEOUT_SECONDS)
    try:
        assert target.create_endpoint(ENDPOINT).state is DeploymentState.READY
        for name, uri in (
            ("blue", "models:/iris-classifier/1"),
            ("green", "models:/iris-classifier/2"),
        ):
            record = target.create_deployment(name, uri, ENDPOINT)
            assert record.state is DeploymentState.READY, (record.reason, record.log_tail)
        target.update_endpoint(ENDPOINT, {"traffic": {"blue": 100}, "mirror": None})
        yield target
    finally:
        target.delete_endpoint(ENDPOINT)


def open_endpoint(page, app_url: str, tab: str) -> None:
    page.goto(f"{app_url}/endpoints?endpoint={ENDPOINT}&tab={tab}")
    expect(page.get_by_role("heading", name=ENDPOINT)).to_be_visible(timeout=LOAD_TIMEOUT_MS)


def test_the_overview_shows_the_traffic_just_applied(app_url, page, target):
    open_endpoint(page, app_url, "Traffic")
    slider = page.get_by_role("slider")
    slider.focus()
    for _ in range(20):
        slider.press("ArrowRight")
    expect(page.get_by_text("blue 80% · green 20%")).to_be_visible()
    page.get_by_role("button", name="Apply traffic").click()
    overview = page.locator('[data-testid="stDataFrame"]').first
    expect(overview).to_contain_text("blue 80% · green 20%", timeout=LOAD_TIMEOUT_MS)
    expect(overview).not_to_contain_text("blue 100%")
    assert target.get_endpoint(ENDPOINT).traffic == {"blue": 80, "green": 20}
