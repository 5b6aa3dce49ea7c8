"""The Endpoints page over an Azure online endpoint in a real browser: the target picker, logs,
a traffic change, a rollback and a key regeneration, each read back from the workspace.

The app server runs in its own process, so its Azure transport is set through the test-only
hook (deploystudio/deployment/azure/fake_transport_hook.py): the fake ARM of
tests/e2e/azure_app_transport.py, under the real azure-ai-ml and the app's real AzureTarget.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from deploystudio.deployment.azure.fake_transport_hook import (
    CONNECTION_VARIABLE,
    TEST_FLAG_VARIABLE,
)
from deploystudio.deployment.local.target import LocalTarget
from tests.e2e.azure_app_transport import ENDPOINT, WORKSPACE_ENV
from tests.e2e.conftest import running_app

pytestmark = pytest.mark.e2e

LOAD_TIMEOUT_MS = 60_000
CHANGE_TIMEOUT_MS = 90_000


@pytest.fixture
def azure_app_url(studio_home: Path, seeded, settings, tmp_path: Path) -> Iterator[str]:
    extra = {
        **WORKSPACE_ENV,
        CONNECTION_VARIABLE: "tests.e2e.azure_app_transport:connection",
        TEST_FLAG_VARIABLE: "1",
    }
    try:
        with running_app(studio_home, tmp_path, extra) as url:
            yield url
    finally:
        LocalTarget(settings).stop_all()


def open_tab(page: Page, url: str, tab: str) -> None:
    page.goto(f"{url}/endpoints?target=azure&endpoint={ENDPOINT}&tab={tab.replace(' ', '+')}")
    expect(page.get_by_role("heading", name=ENDPOINT)).to_be_visible(timeout=LOAD_TIMEOUT_MS)
    expect(page.get_by_role("tab", name=tab, selected=True)).to_be_visible()


def shares(page: Page, blue: int, green: int):
    # The Traffic tab's caption (the endpoints table above has the same words in a cell).
    return page.get_by_test_id("stTabs").get_by_text(f"blue {blue}% · green {green}%")


def test_an_azure_endpoint_is_managed_from_the_endpoints_page(azure_app_url, page):
    url = azure_app_url
    # The picker offers the workspace from the environment; local is the default.
    page.goto(f"{url}/endpoints")
    expect(page.get_by_role("heading", name="Endpoints")).to_be_visible(timeout=LOAD_TIMEOUT_MS)
    page.get_by_text("Azure ML: ws-e2e").click()
    expect(page.get_by_role("heading", name=ENDPOINT)).to_be_visible(timeout=LOAD_TIMEOUT_MS)

    # Logs: green's, from the workspace's getLogs.
    page.get_by_text("green · ready").click()
    expect(page.get_by_text("listening on 31311")).to_be_visible()

    # Traffic: 80/20 -> 70/30, then read back from Azure on a new page load.
    open_tab(page, url, "Traffic")
    expect(shares(page, 80, 20)).to_be_visible()
    slider = page.get_by_role("slider")
    slider.focus()
    for _ in range(10):
        slider.press("ArrowRight")
    expect(shares(page, 70, 30)).to_be_visible()
    page.get_by_role("button", name="Apply traffic").click()
    expect(page.get_by_text("Set traffic: succeeded")).to_be_visible(timeout=CHANGE_TIMEOUT_MS)
    open_tab(page, url, "Traffic")
    expect(shares(page, 70, 30)).to_be_visible()

    # Rollback: all live traffic back to blue.
    page.goto(
        f"{url}/endpoints?target=azure&endpoint={ENDPOINT}&tab=Safe+rollout&old=blue&new=green"
    )
    page.get_by_role("button", name="Rollback to blue").click()
    done = page.get_by_text("Roll back: all live traffic to blue: succeeded")
    expect(done).to_be_visible(timeout=CHANGE_TIMEOUT_MS)
    expect(page.get_by_role("button", name="Rollback to blue")).to_be_disabled()
    open_tab(page, url, "Traffic")
    expect(shares(page, 100, 0)).to_be_visible()

    # Keys: the secondary key is regenerated, the primary one kept.
    open_tab(page, url, "Keys")
    page.get_by_text("Show keys").click()
    expect(page.get_by_text("Secondary key", exact=True)).to_be_visible()
    codes = page.locator('[data-testid="stCode"]')
    count = codes.count()  # the scoring URI (when Azure gave one), then the two keys
    primary, secondary = codes.nth(count - 2).inner_text(), codes.nth(count - 1).inner_text()
    assert primary.strip() and secondary.strip() and primary != secondary
    page.get_by_text("secondary", exact=True).click()
    page.get_by_text("The current secondary key stops working").click()
    page.get_by_role("button", name="Regenerate the secondary key").click()
    done = page.get_by_text("Regenerate the secondary key: succeeded")
    expect(done).to_be_visible(timeout=CHANGE_TIMEOUT_MS)
    expect(page.get_by_text(secondary.strip())).to_have_count(0, timeout=CHANGE_TIMEOUT_MS)
    expect(page.get_by_text(primary.strip())).to_be_visible()
    expect(page.get_by_text("Traceback")).to_have_count(0)
