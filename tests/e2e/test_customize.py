"""Customize in a real browser: build a probabilities wrapper, register it, find it in Browse."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

LOAD_TIMEOUT_MS = 60_000
# Building starts the worker and loads the model twice (original and saved copy).
BUILD_TIMEOUT_MS = 180_000
NEW_MODEL = "e2e-iris-probabilities"


def test_create_a_probabilities_version_and_see_it_in_the_version_list(app_url, page):
    page.goto(f"{app_url}/customize?model=iris-classifier&version=2")
    expect(page.get_by_role("heading", name="iris-classifier · version 2")).to_be_visible(
        timeout=LOAD_TIMEOUT_MS
    )
    page.get_by_text("Probabilities instead of classes").click()
    page.get_by_role("button", name="Build and compare").click()
    expect(
        page.get_by_role("heading", name="Original and wrapped, on the input example")
    ).to_be_visible(timeout=BUILD_TIMEOUT_MS)
    # The visible table: the option editors of the wrapper kind shown before the click are
    # tables too, and a hidden one left from that kind can come first under load.
    comparison = page.locator('[data-testid="stDataFrame"]').filter(visible=True).first
    comparison.scroll_into_view_if_needed(timeout=LOAD_TIMEOUT_MS)
    for header in ("original: prediction", "wrapped: setosa", "wrapped: virginica"):
        expect(comparison.locator('[role="columnheader"]', has_text=header)).to_have_count(1)

    target = page.get_by_label("Register as", exact=False)
    target.fill(NEW_MODEL)
    target.press("Enter")
    page.get_by_role("button", name="Register new version").click()
    expect(page.get_by_text(f"Registered {NEW_MODEL} version 1")).to_be_visible(
        timeout=BUILD_TIMEOUT_MS
    )

    page.get_by_role("link", name=f"All versions of {NEW_MODEL}").click()
    expect(page.get_by_role("heading", name="Registered models")).to_be_visible(
        timeout=LOAD_TIMEOUT_MS
    )
    expect(page.get_by_role("link", name="Inspect version 1")).to_be_visible(
        timeout=LOAD_TIMEOUT_MS
    )
    assert f"model={NEW_MODEL}" in page.url
    versions = page.locator('[data-testid="stDataFrame"]').last
    expect(versions).to_contain_text("READY", timeout=LOAD_TIMEOUT_MS)
    expect(page.get_by_text("Page not found")).to_have_count(0)
