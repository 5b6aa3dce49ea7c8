"""Exploring the registry in a real browser (issue 20, item 4): a tag filter that finds nothing
suggests the tags that exist, and the model chosen on Browse is the one the Batch page opens
on, with its settings labelled in words."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

LOAD_TIMEOUT_MS = 60_000
GRID_HEADER_PX = 35
GRID_ROW_PX = 35


def test_tag_suggestion_then_batch_remembers_the_model(app_url, page):
    page.goto(f"{app_url}/browse")
    expect(page.get_by_role("heading", name="Registered models")).to_be_visible(
        timeout=LOAD_TIMEOUT_MS
    )
    tag = page.get_by_role("textbox", name="Tag")
    tag.fill("framework=sklearn")
    tag.press("Enter")
    expect(page.get_by_text("No registered models match these filters.")).to_be_visible(
        timeout=LOAD_TIMEOUT_MS
    )
    page.get_by_role("button", name="framework=scikit-learn").click()
    expect(tag).to_have_value("framework=scikit-learn", timeout=LOAD_TIMEOUT_MS)
    grid = page.locator('[data-testid="stDataFrame"]').first
    expect(grid).to_contain_text("iris-classifier", timeout=LOAD_TIMEOUT_MS)
    expect(grid).to_contain_text("diabetes-regressor")

    search = page.get_by_label("Search by name")
    search.fill("diabetes-regressor")
    search.press("Enter")
    expect(page.get_by_text("Page 1 · 1 model(s)")).to_be_visible(timeout=LOAD_TIMEOUT_MS)
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 15, box["y"] + GRID_HEADER_PX + GRID_ROW_PX / 2)
    expect(page.get_by_role("link", name="Inspect version 1 (champion)")).to_be_visible(
        timeout=LOAD_TIMEOUT_MS
    )

    # The sidebar's link carries no address: the session remembers the model.
    page.locator('[data-testid="stSidebar"]').get_by_role("link", name="Batch").click()
    expect(page.get_by_role("heading", name="Batch scoring")).to_be_visible(timeout=LOAD_TIMEOUT_MS)
    expect(page.get_by_role("combobox", name="Model")).to_have_value(
        "diabetes-regressor", timeout=LOAD_TIMEOUT_MS
    )
    assert "model=diabetes-regressor" in page.url
    page.get_by_text("Settings", exact=True).click()
    expect(page.get_by_role("spinbutton", name="Files per mini-batch")).to_be_visible()
    expect(page.get_by_text("mini_batch_size", exact=True)).to_have_count(0)
