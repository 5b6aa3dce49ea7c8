"""Predict in a real browser: a shared link, an uploaded CSV, the chart and the table."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

LOAD_TIMEOUT_MS = 60_000
# The first prediction starts the worker process and loads the model: seconds, not minutes.
PREDICT_TIMEOUT_MS = 90_000
IRIS_CSV = (
    "sepal_length,sepal_width,petal_length,petal_width\n"
    "5.1,3.5,1.4,0.2\n"
    "6.7,3.0,5.2,2.3\n"
    "5.9,3.0,4.2,1.5\n"
)


def test_upload_a_csv_predict_and_see_the_chart_and_table(app_url, page, tmp_path):
    csv = tmp_path / "iris-rows.csv"
    csv.write_text(IRIS_CSV)
    page.goto(f"{app_url}/predict?model=iris-classifier&version=1")
    expect(page.get_by_role("heading", name="iris-classifier · version 1")).to_be_visible(
        timeout=LOAD_TIMEOUT_MS
    )
    expect(page.get_by_text("Page not found")).to_have_count(0)

    page.get_by_role("tab", name="Upload a file").click()
    uploader = page.locator('[data-testid="stFileUploader"] input[type="file"]')
    uploader.set_input_files(str(csv))
    expect(page.get_by_text("read as CSV file: 3 row(s) × 4 column(s)")).to_be_visible(
        timeout=LOAD_TIMEOUT_MS
    )
    expect(page.get_by_text("Upload a file tab to the model")).to_be_visible()

    page.get_by_role("button", name="Predict", exact=True).click()
    chart = page.locator('[data-testid="stPlotlyChart"]')
    expect(chart.locator(".js-plotly-plot")).to_be_visible(timeout=PREDICT_TIMEOUT_MS)
    expect(chart).to_contain_text("Rows per predicted class")
    expect(
        page.get_by_text("3 prediction(s) for the input of the Upload a file tab")
    ).to_be_visible()
    # The grid draws on a canvas, and mirrors its headers and cells in an accessible table.
    results = page.locator('[data-testid="stDataFrame"]').last
    expect(results.locator('[role="columnheader"]')).to_have_text(
        ["sepal_length", "sepal_width", "petal_length", "petal_width", "prediction"]
    )
    cells = results.locator('[role="gridcell"]').all_inner_texts()
    assert len(cells) == 3 * 5, cells
    assert set(cells[4::5]) <= {"setosa", "versicolor", "virginica"}
    assert cells[4] == "setosa"  # 5.1, 3.5, 1.4, 0.2 is the textbook setosa
    expect(page.get_by_role("button", name="Download predictions (CSV)")).to_be_visible()
    expect(page.get_by_text("Model load")).to_be_visible()
    expect(page.get_by_text("Page not found")).to_have_count(0)
    assert "/predict?model=iris-classifier&version=1" in page.url


def test_inspect_links_to_predict_with_the_same_model(app_url, page):
    page.goto(f"{app_url}/inspect?model=cancer-risk-scorer&version=1")
    link = page.get_by_role("link", name="Preview predictions")
    expect(link).to_be_visible(timeout=LOAD_TIMEOUT_MS)
    link.click()
    expect(page).to_have_url(
        re.compile(r"/predict\?model=cancer-risk-scorer&version=1$"), timeout=LOAD_TIMEOUT_MS
    )
    expect(page.get_by_role("heading", name="Preview predictions")).to_be_visible(
        timeout=LOAD_TIMEOUT_MS
    )
    expect(page.get_by_role("heading", name="cancer-risk-scorer · version 1")).to_be_visible()
    expect(page.get_by_text("Page not found")).to_have_count(0)
