"""The overview, the app's home, in a real browser: what a stakeholder sees first, and its next
steps leading to the page where each is done.

One endpoint made through the domain (blue: iris v1 with 80%, green: iris v2 with 20%); the
fixture deletes it whatever happened.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import LOAD_TIMEOUT_MS, endpoint_made

pytestmark = pytest.mark.e2e

ENDPOINT = "e2e-overview"


@pytest.fixture(scope="module")
def target(settings, registry, seeded):
    with endpoint_made(settings, registry, ENDPOINT, {"blue": 80, "green": 20}) as target:
        yield target


def test_home_shows_the_overview_and_its_next_step_opens_deploy(app_url, page, target, tmp_path):
    page.goto(app_url)
    expect(page.get_by_role("heading", name="Deploy Studio", exact=True)).to_be_visible(
        timeout=LOAD_TIMEOUT_MS
    )
    expect(page).to_have_title("Overview · Deploy Studio")
    metrics = page.locator('[data-testid="stMetric"]')
    expect(metrics.filter(has_text="Models")).to_be_visible()
    expect(metrics.filter(has_text="Endpoints healthy")).to_contain_text("of")

    # The traffic chart draws the split just set; the endpoints table says what serves it.
    expect(page.locator(".js-plotly-plot").filter(has_text="Live traffic")).to_contain_text(
        "green 20%", timeout=LOAD_TIMEOUT_MS
    )
    endpoints = page.locator('[data-testid="stDataFrame"]').filter(has_text=ENDPOINT).first
    expect(endpoints).to_contain_text("blue 80% · green 20%", timeout=LOAD_TIMEOUT_MS)
    expect(endpoints).to_contain_text("iris-classifier v2")
    # The data grid draws only the cells on screen: bring the activity table into view first.
    page.get_by_role("heading", name="Recent activity").scroll_into_view_if_needed()
    activity = page.locator('[data-testid="stDataFrame"]').last
    activity.scroll_into_view_if_needed()
    expect(activity).to_contain_text(
        f"Changed the traffic of endpoint {ENDPOINT}", timeout=LOAD_TIMEOUT_MS
    )
    expect(activity).to_contain_text("blue 80% · green 20%")
    expect(activity).not_to_contain_text("set_traffic")
    page.screenshot(path=str(tmp_path / "overview.png"), full_page=True)

    # diabetes-regressor's champion is served nowhere: its next step opens Deploy on it.
    step = page.get_by_role("link", name=re.compile(r"Deploy diabetes-regressor version \d+"))
    expect(step).to_be_visible()
    step.click()
    expect(page.get_by_role("heading", name="Deploy a model")).to_be_visible(
        timeout=LOAD_TIMEOUT_MS
    )
    assert "model=diabetes-regressor" in page.url
    expect(page.get_by_role("combobox", name="Model")).to_have_value("diabetes-regressor")
    expect(page.get_by_role("combobox", name="Version")).to_have_value(re.compile("@champion"))
