"""What the screens say right after an action, in a real browser (issue 20, "truthful screens"),
and the product's name on every tab.

One endpoint made through the domain (blue: iris v1 with all traffic, green: iris v2 at 0%),
shared by the endpoint tests; the fixture deletes it whatever happened.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from deploystudio.deployment.actors import local_user
from tests.e2e.conftest import LOAD_TIMEOUT_MS, endpoint_made
from tests.e2e.conftest import open_endpoint as open_page

pytestmark = pytest.mark.e2e

# Building starts the worker and loads the model twice; registering uploads it.
BUILD_TIMEOUT_MS = 180_000
WRAPPED_MODEL = "e2e-truth-probabilities"
ENDPOINT = "e2e-truth"


@pytest.fixture(scope="module")
def target(settings, registry, seeded):
    with endpoint_made(settings, registry, ENDPOINT, {"blue": 100}) as target:
        yield target


def open_endpoint(page, app_url: str, tab: str) -> None:
    open_page(page, app_url, ENDPOINT, tab)


def test_the_overview_shows_the_traffic_just_applied(app_url, page, target):
    open_endpoint(page, app_url, "Traffic")
    expect(page).to_have_title("Endpoints · Deploy Studio")
    expect(page.get_by_role("img", name="Logo").first).to_be_visible()
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


def test_the_rollout_checklist_ticks_only_what_happened(app_url, page, target):
    # Traffic set by hand, straight from 0% to 20%: no test call, no mirror, no 10% step.
    target.update_endpoint(ENDPOINT, {"traffic": {"blue": 80, "green": 20}, "mirror": None})
    page.goto(f"{app_url}/endpoints?endpoint={ENDPOINT}&tab=Safe+rollout&old=blue&new=green")
    now = page.locator("li", has_text="(now)")
    expect(now).to_contain_text("Send green 20% of live traffic (now)", timeout=LOAD_TIMEOUT_MS)
    mirror = page.locator("li", has_text="Mirror live traffic to green")
    expect(mirror).to_contain_text("skipped: no mirror was set")
    expect(page.get_by_text("Send green 10% of live traffic")).to_have_count(0)

    page.get_by_role("button", name="Rollback to blue").click()
    expect(now).to_contain_text("Test green directly (now)", timeout=LOAD_TIMEOUT_MS)
    expect(page.locator("li", has_text="skipped")).to_have_count(0)
    assert target.get_endpoint(ENDPOINT).traffic == {"blue": 100, "green": 0}


def test_register_is_not_offered_again_after_it_succeeded(app_url, page):
    page.goto(f"{app_url}/customize?model=iris-classifier&version=2")
    expect(page.get_by_role("heading", name="iris-classifier · version 2")).to_be_visible(
        timeout=LOAD_TIMEOUT_MS
    )
    expect(page).to_have_title("Customize · Deploy Studio")
    page.get_by_text("Probabilities instead of classes").click()
    page.get_by_role("button", name="Build and compare").click()
    expect(page.get_by_text("Built in ").first).to_be_visible(timeout=BUILD_TIMEOUT_MS)
    target = page.get_by_label("Register as", exact=False)
    target.fill(WRAPPED_MODEL)
    target.press("Enter")
    register = page.get_by_role("button", name="Register new version")
    expect(register).to_be_enabled(timeout=LOAD_TIMEOUT_MS)
    register.click()
    expect(page.get_by_text(f"Registered {WRAPPED_MODEL} version 1")).to_be_visible(
        timeout=BUILD_TIMEOUT_MS
    )
    # Right after the success, the same wrapper is not one click away from a copy.
    expect(register).to_be_disabled(timeout=LOAD_TIMEOUT_MS)
    expect(page.get_by_text(f"{WRAPPED_MODEL} already has this wrapper")).to_be_visible()

    page.get_by_role("link", name="Preview it").click()
    expect(page.get_by_text(f"Registered by {local_user()}.")).to_be_visible(
        timeout=LOAD_TIMEOUT_MS
    )
