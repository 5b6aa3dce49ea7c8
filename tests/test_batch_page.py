"""The Batch page through AppTest, with real batch jobs (their own processes) over the session's
seeded registry, in a data folder of this module's own.

Two real jobs, in file order: iris over two uploaded CSVs (run to the end), and a slow model
over twelve files (cancelled from the page). The past-jobs test reads both.
"""

from __future__ import annotations

import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from deploystudio.deployment.batch.jobs import get_batch_job, list_batch_jobs, start_batch_job
from deploystudio.deployment.batch.records import JobState
from deploystudio.deployment.batch.settings import BatchSettings
from deploystudio.deployment.batch.uploads import UPLOADS_FOLDER, safe_file_name
from deploystudio.errors import BatchInputError
from tests.conftest import REPO_ROOT
from tests.page_support import fresh_caches, pages_using, rerun  # noqa: F401 (fixture)
from tests.test_batch_cli import SLEEPY_MODEL, write_rows

# The page script itself: it runs the same without app.py's navigation (which the lead wires).
BATCH = str(REPO_ROOT / "views" / "batch.py")
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
RUN_TIMEOUT = 120
JOB_DEADLINE = 120


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("batch-page")


@pytest.fixture(scope="module")
def page_settings(home, settings, seeded):
    """Point the pages at this module's data folder and the session's seeded registry."""
    with pages_using(home, settings) as page_settings:
        yield page_settings


@pytest.fixture(scope="module")
def jobs() -> dict[str, str]:
    """Ids of the jobs the tests started, by role, for the past-jobs test."""
    return {}


def open_batch(query_params: dict) -> AppTest:
    at = AppTest.from_file(BATCH, default_timeout=RUN_TIMEOUT)
    for name, value in query_params.items():
        at.query_params[name] = value
    return rerun(at)


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def wait_until_finished(at: AppTest, deadline_s: float = JOB_DEADLINE) -> AppTest:
    """Rerun the page as its fragment would until the finished view shows."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if any(s.value.startswith("Job ") for s in [*at.success, *at.warning, *at.error]):
            return at
        time.sleep(1)
        rerun(at)
    raise AssertionError(f"the job did not finish in {deadline_s} s: {metrics(at)}")


def frame_with(at: AppTest, column: str) -> pd.DataFrame:
    """The page's table with `column` (AppTest does not expose a dataframe's key)."""
    (found,) = [d.value for d in at.dataframe if column in d.value.columns]
    return found


def iris_csv(rows: int, start: float) -> bytes:
    frame = pd.DataFrame(
        [[start + i * 0.1, 3.0, 1.4 + (i % 3) * 2, 0.2 + (i % 3)] for i in range(rows)],
        columns=COLUMNS,
    )
    return frame.to_csv(index=False).encode()


def test_safe_file_name_keeps_a_plain_base_name():
    assert safe_file_name("../../etc/passwd.csv") == "passwd.csv"
    assert safe_file_name("C:\\Users\\me\\my data.csv") == "my_data.csv"
    assert safe_file_name(".hidden.parquet") == "hidden.parquet"
    with pytest.raises(BatchInputError, match="no usable characters"):
        safe_file_name("../..")


def test_uploaded_csvs_run_to_a_summary_results_and_downloads(page_settings, home, jobs):
    at = open_batch({"model": "iris-classifier", "version": "1"})
    assert at.selectbox(key="deploy_model").value == "iris-classifier"
    assert at.button(key="batch_run").disabled  # nothing to read yet
    at.file_uploader(key="batch_upload").set_value(
        [
            ("../../first.csv", iris_csv(10, 4.5), "text/csv"),
            ("second.csv", iris_csv(7, 5.0), "text/csv"),
        ]
    )
    rerun(at)
    assert not at.button(key="batch_run").disabled
    assert at.segmented_control(key="batch_env").value == "auto"
    at.button(key="batch_run").click()
    rerun(at)
    job_id = at.query_params["job"]
    jobs["iris"] = job_id
    # The demo model was trained here: auto keeps the app's environment, and the job says so.
    assert get_batch_job(page_settings, job_id).environment["key"] is None
    captions = [c.value for c in at.caption]
    assert any("The app's environment: it already has every version" in c for c in captions)
    # The uploads were saved under the data folder with plain names, nowhere else.
    (folder,) = (home / UPLOADS_FOLDER).iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["first.csv", "second.csv"]
    assert not (home.parent / "first.csv").exists()

    wait_until_finished(at)
    assert [s.value for s in at.success] == ["Job completed."]
    figures = metrics(at)
    assert figures["Files scored"] == "2/2"
    assert figures["Files failed"] == "0"
    assert figures["Rows"] == "17"
    results = frame_with(at, "prediction")
    assert len(results) == 17
    assert list(results.columns) == ["row", "prediction", "file_name"]
    assert sorted(set(results["file_name"])) == ["first.csv", "second.csv"]
    assert at.get("plotly_chart"), "no chart of the predictions"
    assert at.get("download_button"), "no download button"
    yaml_text = at.code[0].value
    assert "type: model" in yaml_text and "mini_batch_size: 10" in yaml_text
    assert "azureml:iris-classifier:1" in yaml_text


def test_a_second_click_on_run_asks_before_starting_the_same_job_again(page_settings):
    at = open_batch({"model": "iris-classifier", "version": "1"})
    at.file_uploader(key="batch_upload").set_value([("again.csv", iris_csv(3, 4.8), "text/csv")])
    rerun(at)
    known = {job.id for job in list_batch_jobs(page_settings, limit=500)}
    at.button(key="batch_run").click()
    rerun(at)
    first = at.query_params["job"]
    # The second click of a double click: the same model, input and settings.
    at.button(key="batch_run").click()
    rerun(at)
    started = {job.id for job in list_batch_jobs(page_settings, limit=500)} - known
    assert started == {first}
    assert any(f"You started this job already (job `{first}`)" in w.value for w in at.warning)
    assert at.query_params["job"] == first
    # Asked, the user may still run it again on purpose.
    at.button(key="batch_run_again").click()
    rerun(at)
    second = at.query_params["job"]
    assert second != first
    assert {job.id for job in list_batch_jobs(page_settings, limit=500)} - known == {first, second}
    # Another input is another job: no question.
    at.file_uploader(key="batch_upload").set_value([("other.csv", iris_csv(4, 5.2), "text/csv")])
    rerun(at)
    assert not any("started this job already" in w.value for w in at.warning)
    # Both jobs show in the version's lineage on Inspect, linked to their page.
    inspect = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=RUN_TIMEOUT)
    inspect.switch_page("views/inspect.py")
    inspect.query_params["model"], inspect.query_params["version"] = "iris-classifier", "1"
    rerun(inspect)
    links = [e.proto for e in inspect.main if e.type == "page_link"]
    jobs_linked = {link.query_string for link in links if link.label.startswith("Job ")}
    assert {f"job={first}", f"job={second}"} <= jobs_linked


def test_a_folder_outside_the_roots_is_refused(page_settings, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "rows.csv").write_bytes(iris_csv(3, 5.0))
    at = open_batch({"model": "iris-classifier", "version": "1"})
    at.radio(key="batch_source").set_value("folder")
    rerun(at)
    roots = page_settings.allowed_batch_input_roots
    assert any(str(roots[0]) in c.value for c in at.caption)
    at.text_input(key="batch_folder").input(str(outside))
    rerun(at)
    assert any("is outside the folders batch jobs may read" in e.value for e in at.error)
    assert at.button(key="batch_run").disabled
    # A folder inside the default root is accepted.
    inside = roots[0] / "mine"
    inside.mkdir(parents=True)
    (inside / "rows.csv").write_bytes(iris_csv(3, 5.0))
    at.text_input(key="batch_folder").input(str(inside))
    rerun(at)
    assert not at.error, [e.value for e in at.error]
    assert not at.button(key="batch_run").disabled


@pytest.fixture(scope="module")
def sleepy_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("batch-page-sleepy")
    code = folder / "sleepy.py"
    code.write_text(SLEEPY_MODEL)
    mlflow.pyfunc.save_model(str(folder / "model"), python_model=str(code))
    return folder / "model"


def test_cancel_from_the_page_keeps_the_files_done(page_settings, sleepy_model, tmp_path, jobs):
    folder = tmp_path / "slow"
    folder.mkdir()
    for i in range(12):
        write_rows(folder / f"f{i:02d}.csv", "slow", tmp_path / "none", rows=1)
    job = start_batch_job(
        page_settings,
        str(sleepy_model),
        folder,
        batch_settings=BatchSettings(mini_batch_size=1),
        restrict_input=False,
    )
    jobs["slow"] = job.id
    # Before its first rows (the worker loads the model for seconds) the page says what it does.
    starting = open_batch({"job": job.id})
    assert any(("Queued" in c.value or "loading the model" in c.value) for c in starting.caption)
    deadline = time.monotonic() + JOB_DEADLINE
    while get_batch_job(page_settings, job.id).files_done < 1:
        assert time.monotonic() < deadline, "the slow job scored no file"
        time.sleep(0.3)
    at = open_batch({"job": job.id})
    assert at.metric, "no live counters while the job runs"
    assert not any("loading the model" in c.value for c in at.caption)
    assert at.get("progress")
    at.button(key=f"batch_cancel__{job.id}").click()
    rerun(at)
    wait_until_finished(at, 30)
    assert any(w.value.startswith("Job cancelled") for w in at.warning)
    done = get_batch_job(page_settings, job.id)
    assert done.state is JobState.CANCELLED
    assert 1 <= done.files_done < 12
    assert metrics(at)["Files scored"] == f"{done.files_done}/12"
    assert any(c.value.startswith(f"Not scored ({12 - done.files_done})") for c in at.caption)


def test_past_jobs_list_both_jobs_with_links(page_settings, jobs):
    at = open_batch({})
    table = frame_with(at, "state")
    by_link = dict(zip(table["job"], table["state"], strict=True))
    assert by_link[f"batch?job={jobs['iris']}"] == "completed"
    assert by_link[f"batch?job={jobs['slow']}"] == "cancelled"
    assert set(table.columns) >= {"model", "files", "rows", "started", "seconds"}
