"""Deploy and call an endpoint in a real browser: deploy from Deploy, invoke from Endpoints."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from deploystudio.deployment.local.target import LocalTarget

pytestmark = pytest.mark.e2e

LOAD_TIMEOUT_MS = 60_000
# Creating the endpoint's front, then starting the model server on a busy machine.
DEPLOY_TIMEOUT_MS = 180_000
ENDPOINT = "e2e-iris"


def test_deploy_a_version_then_invoke_it_from_the_endpoints_page(app_url, page, settings):
    try:
        page.goto(f"{app_url}/deploy?model=iris-classifier&version=1")
        expect(page.get_by_role("heading", name="Deploy a model")).to_be_visible(
            timeout=LOAD_TIMEOUT_MS
        )
        name = page.locator(".st-key-deploy_new_endpoint__iris-classifier input")
        name.fill(ENDPOINT)
        name.press("Enter")
        expect(page.get_by_text("Deployment name")).to_be_visible(timeout=LOAD_TIMEOUT_MS)
        page.locator(".st-key-deploy_submit button").click()
        ready = page.get_by_text(f"{ENDPOINT}/blue is ready: models:/iris-classifier/1")
        expect(ready).to_be_visible(timeout=DEPLOY_TIMEOUT_MS)
        scoring_uri = page.locator('[data-testid="stCode"]').filter(
            has_text=re.compile(r"^http://127\.0\.0\.1:\d+/score$")
        )
        expect(scoring_uri).to_be_visible()

        page.get_by_role("link", name=f"Manage {ENDPOINT} on the Endpoints page").click()
        expect(page.get_by_role("heading", name=ENDPOINT)).to_be_visible(timeout=LOAD_TIMEOUT_MS)
        page.get_by_role("tab", name="Invoke").click()
        page.locator(f".st-key-invoke_{ENDPOINT}_send button").click()
        answered_by = page.locator('[data-testid="stMetric"]', has_text="Answered by")
        expect(answered_by).to_contain_text("blue", timeout=LOAD_TIMEOUT_MS)
        # The iris input example is five rows: five class labels come back.
        body = page.locator('[data-testid="stJson"]').last
        for label in ("setosa", "versicolor", "virginica"):
            expect(body).to_contain_text(label)
        expect(page.get_by_text("Traceback")).to_have_count(0)
    finally:
        LocalTarget(settings).stop_all()
