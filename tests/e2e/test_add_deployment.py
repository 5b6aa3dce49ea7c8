"""Add a deployment to an existing endpoint from the Endpoints page, in a real browser: the
model version, runtime and instance count chosen in the form, the change followed live, and
the new deployment ready at 0% of live traffic.

One endpoint made through the domain (blue: iris v1 with all traffic); the fixture deletes it
whatever happened.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import expect

from deploystudio.deployment.base import DeploymentState
from tests.e2e.conftest import LOAD_TIMEOUT_MS, endpoint_made, open_endpoint

pytestmark = pytest.mark.e2e

# Starting a model server with two workers on a busy machine.
ADD_TIMEOUT_MS = 180_000
ENDPOINT = "e2e-add"


@pytest.fixture(scope="module")
def target(settings, registry, seeded):
    blue = {"blue": "models:/iris-classifier/1"}
    with endpoint_made(settings, registry, ENDPOINT, {"blue": 100}, blue) as target:
        yield target


def choose(page, label: str, option: str | re.Pattern) -> None:
    """Pick `option` in the select labelled `label`. The page may rerun and draw the select
    again while its list is open (the list then closes empty): open it again until the option
    shows."""
    for _ in range(5):
        page.get_by_role("combobox", name=label).click()
        wanted = page.get_by_role("option", name=option).first
        try:
            wanted.wait_for(state="visible", timeout=6000)
        except PlaywrightTimeoutError:
            page.keyboard.press("Escape")
            continue
        wanted.click()
        return
    raise AssertionError(f"{label}: no option {option!r} after 5 tries")


def test_add_a_deployment_to_an_endpoint_from_its_page(app_url, page, target, tmp_path):
    open_endpoint(page, app_url, ENDPOINT, "Deployments")
    page.get_by_text("Add a deployment").click()
    expect(page.get_by_role("combobox", name="Model")).to_be_visible(timeout=LOAD_TIMEOUT_MS)
    choose(page, "Model", "iris-classifier")
    choose(page, "Version", re.compile(r"^version 2\b"))
    expect(page.get_by_role("combobox", name="Version")).to_have_value(re.compile("^version 2"))
    page.get_by_text("mlflow", exact=True).click()
    instances = page.get_by_label("Instance count", exact=True)
    instances.fill("2")
    instances.press("Enter")
    name = page.get_by_label("Deployment name", exact=True)
    expect(name).to_have_value("green")  # blue is taken
    expect(page.get_by_text("It starts with 0% of live traffic")).to_be_visible()
    page.get_by_role("button", name="Add deployment").click()

    # The change is followed live at the top of the page, then the table shows it ready.
    status = page.get_by_text(re.compile(r"^Add green \(iris-classifier version 2\) to e2e-add"))
    expect(status.first).to_be_visible(timeout=LOAD_TIMEOUT_MS)
    expect(page.get_by_text(re.compile(r"to e2e-add: succeeded"))).to_be_visible(
        timeout=ADD_TIMEOUT_MS
    )
    table = page.locator('[data-testid="stDataFrame"]').filter(has_text="model URI")
    expect(table).to_contain_text("models:/iris-classifier/2", timeout=LOAD_TIMEOUT_MS)
    expect(page.get_by_text("Traceback")).to_have_count(0)
    page.screenshot(path=str(tmp_path / "added.png"), full_page=True)

    record = target.get_deployment("green", ENDPOINT)
    assert record.state is DeploymentState.READY, (record.reason, record.log_tail)
    assert record.model_uri == "models:/iris-classifier/2"
    assert (record.runtime.value, record.settings["instance_count"]) == ("mlflow", 2)
    assert target.get_endpoint(ENDPOINT).traffic == {"blue": 100, "green": 0}
