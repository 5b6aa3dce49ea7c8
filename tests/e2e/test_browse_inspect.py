"""The first journey in a real browser: browse, click into the classifier, read its report."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

LOAD_TIMEOUT_MS = 60_000
# Streamlit's data grid draws on a canvas: rows are clicked by position (header and rows are
# 35 px high; the selection checkbox sits in the first 30 px).
GRID_HEADER_PX = 35
GRID_ROW_PX = 35


def test_browse_click_classifier_and_see_signature_and_report(app_url, page):
    page.goto(f"{app_url}/browse")
    expect(page.get_by_role("heading", name="Registered models")).to_be_visible(
        timeout=LOAD_TIMEOUT_MS
    )
    search = page.get_by_label("Search by name")
    search.fill("iris-classifier")
    search.press("Enter")
    expect(page.get_by_text("Page 1 · 1 model(s)")).to_be_visible(timeout=LOAD_TIMEOUT_MS)

    grid = page.locator('[data-testid="stDataFrame"]').first
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 15, box["y"] + GRID_HEADER_PX + GRID_ROW_PX / 2)
    link = page.get_by_role("link", name="Inspect version 2 (challenger)")
    expect(link).to_be_visible(timeout=LOAD_TIMEOUT_MS)
    assert "model=iris-classifier" in page.url

    link.click()
    expect(page.get_by_role("heading", name="iris-classifier · version 2")).to_be_visible(
        timeout=LOAD_TIMEOUT_MS
    )
    assert "/inspect?model=iris-classifier&version=2" in page.url

    signature = page.locator('[data-testid="stTable"]').first
    for column in ("sepal_length", "sepal_width", "petal_length", "petal_width"):
        expect(signature).to_contain_text(column)
    expect(signature).to_contain_text("double")

    expect(page.get_by_role("heading", name="Deployability report")).to_be_visible()
    expect(page.get_by_text("14 check(s) passed")).to_be_visible()
    expect(page.get_by_text("No-code deployment", exact=False).first).to_be_visible()


def test_shared_link_to_a_model_without_signature_shows_warnings(app_url, page):
    page.goto(f"{app_url}/inspect?model=wine-no-signature&version=1")
    expect(page.get_by_role("heading", name="wine-no-signature · version 1")).to_be_visible(
        timeout=LOAD_TIMEOUT_MS
    )
    expect(page.get_by_text("Page not found")).to_have_count(0)
    expect(page.get_by_text("warn", exact=False).first).to_be_visible()
    expect(page.get_by_text("This model has no signature", exact=False)).to_be_visible()


def test_deep_link_is_the_first_visit_of_a_fresh_server(fresh_app_url, page):
    # A deep link must run through app.py (sidebar, navigation) even as the server's first
    # session; with a folder named pages/ Streamlit would run the page script alone.
    page.goto(f"{fresh_app_url}/inspect?model=iris-classifier&version=1")
    expect(page.get_by_role("heading", name="iris-classifier · version 1")).to_be_visible(
        timeout=LOAD_TIMEOUT_MS
    )
    sidebar = page.locator('[data-testid="stSidebar"]')
    expect(sidebar.get_by_text("Embedded MLflow store", exact=False)).to_be_visible()
    expect(page.get_by_role("link", name="Browse models")).to_be_visible()
    expect(page.get_by_text("Page not found")).to_have_count(0)
