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


# init() raises on line 2: the editor must mark that line once validation fails.
FAILING_SCRIPT = (
    'def init():\n    raise ValueError("no model here")\n\n\ndef run(raw_data):\n    return []\n'
)
VALIDATE_TIMEOUT_MS = 180_000


def test_the_script_editor_marks_the_line_where_validation_failed(app_url, page, tmp_path):
    page.goto(f"{app_url}/customize?model=iris-classifier&version=1")
    expect(page.get_by_role("heading", name="iris-classifier · version 1")).to_be_visible(
        timeout=LOAD_TIMEOUT_MS
    )
    page.get_by_role("tab", name="Scoring script and environment").click()
    editor = page.frame_locator('iframe[title*="code_editor"]')
    content = editor.locator(".ace_content")
    expect(content).to_contain_text("def init()", timeout=LOAD_TIMEOUT_MS)
    # Line numbers and Python highlighting (Ace's keyword tokens), from the bundled frontend.
    expect(editor.locator(".ace_gutter-cell").first).to_have_text("1")
    expect(editor.locator(".ace_keyword").first).to_be_visible()

    content.click()
    page.keyboard.press("Control+a")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(FAILING_SCRIPT)
    # Leave the editor (it sends its text on blur) and let that rerun finish before the click.
    page.get_by_role("heading", name="iris-classifier · version 1").click()
    page.wait_for_timeout(1500)
    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=LOAD_TIMEOUT_MS)
    page.get_by_role("button", name="Validate in azmlinfsrv on 127.0.0.1").click()

    expect(page.get_by_text("init() raised ValueError: no model here")).to_be_visible(
        timeout=VALIDATE_TIMEOUT_MS
    )
    # Line 2 is marked: an error annotation in the gutter and the highlighted line.
    marked = editor.locator(".ace_gutter-cell.ace_error")
    expect(marked).to_have_count(1, timeout=LOAD_TIMEOUT_MS)
    expect(marked).to_have_text("2")
    expect(editor.locator(".deploystudio-error-line")).to_have_count(1)
    # The script validated is the one typed, and it is still in the editor.
    expect(content).to_contain_text('raise ValueError("no model here")')
    page.screenshot(path=str(tmp_path / "marked.png"), full_page=True)
