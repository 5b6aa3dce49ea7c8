"""A double click on the Batch page's Run starts one job, in a real browser (issue 20: the two
clicks reached the server as two runs, and each started a job)."""

from __future__ import annotations

import re
import time

import pandas as pd
import pytest
from playwright.sync_api import expect

from deploystudio.deployment.batch.jobs import list_batch_jobs
from tests.e2e.conftest import LOAD_TIMEOUT_MS

pytestmark = pytest.mark.e2e

# Long enough for a second job's record to appear if the second click had started one.
SETTLE_SECONDS = 5


def test_a_double_click_on_run_starts_one_job(app_url, page, settings, tmp_path):
    csv = tmp_path / "double.csv"
    pd.DataFrame(
        [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]],
        columns=["sepal_length", "sepal_width", "petal_length", "petal_width"],
    ).to_csv(csv, index=False)
    known = {job.id for job in list_batch_jobs(settings, limit=500)}
    page.goto(f"{app_url}/batch?model=iris-classifier&version=1")
    expect(page.get_by_role("heading", name="Batch scoring")).to_be_visible(
        timeout=LOAD_TIMEOUT_MS
    )
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(csv))
    run = page.get_by_role("button", name="Run", exact=True)
    expect(run).to_be_enabled(timeout=LOAD_TIMEOUT_MS)
    run.dblclick()
    expect(page).to_have_url(re.compile(r"[?&]job="), timeout=LOAD_TIMEOUT_MS)
    time.sleep(SETTLE_SECONDS)
    started = [job for job in list_batch_jobs(settings, limit=500) if job.id not in known]
    assert len(started) == 1, [job.id for job in started]
    assert started[0].id in page.url
    expect(page.get_by_text("Traceback")).to_have_count(0)
