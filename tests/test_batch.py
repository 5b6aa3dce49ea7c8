"""Batch jobs end to end: real detached runners, real worker processes, the real demo registry.

Each module fixture runs one job and the tests read its record, files and output; jobs are
started with a small `chunk_rows` so that files are read in several chunks.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from deploystudio.customization.bundles import bundle_store
from deploystudio.customization.scoring_script import ScriptTemplate, generate_scoring_script
from deploystudio.customization.script_environment import generate_environment
from deploystudio.deployment.batch.jobs import (
    BatchSettings,
    JobState,
    batch_job_files,
    batch_summary,
    get_batch_job,
    list_batch_jobs,
    start_batch_job,
    wait_for_batch_job,
)
from deploystudio.deployment.store import DeploymentStore
from deploystudio.errors import BatchInputError
from deploystudio.prediction import local_model_path

IRIS = "models:/iris-classifier/2"
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
JOB_TIMEOUT_S = 240


def iris_frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.uniform(0.1, 7.9, (rows, 4)).round(2), columns=COLUMNS)


def run_job(settings, model_uri, input_path, **kwargs):
    job = start_batch_job(settings, model_uri, input_path, restrict_input=False, **kwargs)
    assert job.state in (JobState.QUEUED, JobState.RUNNING)
    return wait_for_batch_job(settings, job.id, timeout_seconds=JOB_TIMEOUT_S)


@pytest.fixture(scope="module")
def iris_model(settings, seeded):
    return mlflow.pyfunc.load_model(str(local_model_path(IRIS, settings)))


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory) -> Path:
    """Two CSVs (one spanning several chunks), a Parquet file, a CSV with a bad value deep in its
    second chunk, a CSV missing a column, a file that is no Parquet, a text file, a sub-folder."""
    folder = tmp_path_factory.mktemp("batch-mixed")
    iris_frame(60_000, 1).to_csv(folder / "a-big.csv", index=False)
    iris_frame(37, 2).to_csv(folder / "b-small.csv", index=False)
    iris_frame(50_000, 3).to_parquet(folder / "c.parquet")
    corrupt = iris_frame(60_000, 4).astype(object)
    corrupt.loc[45_000, "sepal_width"] = "abc"
    corrupt.to_csv(folder / "d-corrupt.csv", index=False)
    iris_frame(10, 5).drop(columns="petal_width").to_csv(folder / "e-no-petal.csv", index=False)
    (folder / "f-broken.parquet").write_bytes(b"this is not parquet")
    (folder / "g-notes.txt").write_text("not data")
    (folder / "nested").mkdir()
    iris_frame(5, 6).to_csv(folder / "nested" / "ignored.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def mixed_job(settings, seeded, mixed_folder, tmp_path_factory):
    output = tmp_path_factory.mktemp("batch-mixed-out")
    options = BatchSettings(mini_batch_size=2, max_concurrency_per_instance=2, chunk_rows=20_000)
    return run_job(settings, IRIS, mixed_folder, batch_settings=options, output_dir=output)


def test_folder_scores_like_in_process_predictions(mixed_job, mixed_folder, iris_model):
    assert mixed_job.state is JobState.COMPLETED, mixed_job.reason
    output = pd.read_csv(mixed_job.output_path)
    assert list(output.columns) == ["row", "prediction", "file_name"]
    assert set(output["file_name"]) == {"a-big.csv", "b-small.csv", "c.parquet"}
    for name, frame in [
        ("a-big.csv", pd.read_csv(mixed_folder / "a-big.csv")),
        ("b-small.csv", pd.read_csv(mixed_folder / "b-small.csv")),
        ("c.parquet", pd.read_parquet(mixed_folder / "c.parquet")),
    ]:
        rows = output[output["file_name"] == name].sort_values("row")
        # `row` counts each file's rows from 0, continuous across its chunks.
        assert rows["row"].tolist() == list(range(len(frame)))
        expected = iris_model.predict(frame)
        assert rows["prediction"].tolist() == list(expected), name
    assert mixed_job.rows_done == 60_000 + 37 + 50_000


def test_failed_files_are_listed_with_file_and_row(mixed_job, settings):
    files = {f.name: f for f in batch_job_files(settings, mixed_job.id)}
    assert "ignored.csv" not in files  # sub-folders are not read, as on Azure
    failed = {name: f.error for name, f in files.items() if f.state == "failed"}
    assert set(failed) == {"d-corrupt.csv", "e-no-petal.csv", "f-broken.parquet", "g-notes.txt"}
    assert failed["d-corrupt.csv"].startswith("d-corrupt.csv, rows 40001-60000")
    assert (
        "Column 'sepal_width' expects double; row 45001 (data rows counted from 1) has 'abc'"
        in failed["d-corrupt.csv"]
    )
    assert failed["e-no-petal.csv"].startswith("e-no-petal.csv, rows 1-10")
    assert "petal_width" in failed["e-no-petal.csv"]
    assert "cannot be read as Parquet" in failed["f-broken.parquet"]
    assert "only .csv and .parquet files can be scored" in failed["g-notes.txt"]
    assert mixed_job.files_failed == 4
    assert "4 of 7 file(s) failed" in mixed_job.reason


def test_summary_and_job_list(mixed_job, settings):
    summary = batch_summary(settings, mixed_job.id)
    assert summary["state"] == "completed"
    assert summary["files"] == 7
    assert summary["files_succeeded"] == 3
    assert summary["rows"] == 110_037
    assert summary["rows_per_second"] > 0
    assert {f["file"] for f in summary["failed_files"]} >= {"d-corrupt.csv", "g-notes.txt"}
    assert summary["worker_memory"]["after_load_mb"] > 0
    assert mixed_job.id in [job.id for job in list_batch_jobs(settings)]
    actions = [(e.action, e.target) for e in DeploymentStore.from_settings(settings).history()]
    assert ("batch_start", mixed_job.id) in actions
    assert ("batch_finish", mixed_job.id) in actions


def test_error_threshold_zero_fails_the_job_and_keeps_finished_files(
    settings, seeded, tmp_path, iris_model
):
    folder = tmp_path / "in"
    folder.mkdir()
    for name, seed in (("a.csv", 1), ("b.csv", 2), ("d.csv", 4)):
        iris_frame(20, seed).to_csv(folder / name, index=False)
    (folder / "c.csv").write_text("sepal_length,sepal_width\n1,2,3,4\n")
    options = BatchSettings(mini_batch_size=1, error_threshold=0)
    job = run_job(settings, IRIS, folder, batch_settings=options, output_dir=tmp_path / "out")
    assert job.state is JobState.FAILED
    assert "more than error_threshold 0 allows" in job.reason
    assert "the first: c.csv, rows 1-1" in job.reason
    assert "2 of 4 file(s) finished and are kept" in job.reason
    states = {f.name: f.state.value for f in batch_job_files(settings, job.id)}
    assert states == {"a.csv": "done", "b.csv": "done", "c.csv": "failed", "d.csv": "pending"}
    output = pd.read_csv(job.output_path)
    assert sorted(set(output["file_name"])) == ["a.csv", "b.csv"]
    assert job.summary["not_scored_files"] == ["d.csv"]
    # A second job into the same folder would overwrite these predictions: refused.
    with pytest.raises(BatchInputError, match="already exists"):
        start_batch_job(settings, IRIS, folder, output_dir=tmp_path / "out", restrict_input=False)


def test_a_bundles_batch_script_scores_the_files(settings, seeded, tmp_path, iris_model):
    model_path = local_model_path(IRIS, settings)
    bundle = bundle_store(settings).save(
        "iris-batch-test",
        generate_scoring_script(ScriptTemplate.BATCH, model_path),
        generate_environment(model_path),
        IRIS,
        ScriptTemplate.BATCH.value,
    )
    folder = tmp_path / "in"
    folder.mkdir()
    frames = {"a.csv": iris_frame(30, 1), "b.csv": iris_frame(12, 2)}
    for name, frame in frames.items():
        frame.to_csv(folder / name, index=False)
    options = BatchSettings(mini_batch_size=2)
    job = run_job(
        settings, IRIS, folder, batch_settings=options, bundle=bundle.label, output_dir=tmp_path
    )
    assert job.state is JobState.COMPLETED, job.reason
    assert job.bundle == bundle.label
    output = pd.read_csv(job.output_path)
    assert list(output.columns) == ["file_name", "prediction"]
    for name, frame in frames.items():
        assert output[output["file_name"] == name]["prediction"].tolist() == list(
            iris_model.predict(frame)
        )
    assert {f.name: f.rows for f in batch_job_files(settings, job.id)} == {"a.csv": 30, "b.csv": 12}


def test_an_online_bundle_is_refused(settings, seeded, tmp_path):
    model_path = local_model_path(IRIS, settings)
    bundle = bundle_store(settings).save(
        "iris-online-test",
        generate_scoring_script(ScriptTemplate.NO_CODE, model_path),
        generate_environment(model_path),
        IRIS,
        ScriptTemplate.NO_CODE.value,
    )
    iris_frame(3, 1).to_csv(tmp_path / "a.csv", index=False)
    with pytest.raises(BatchInputError, match="needs a batch script"):
        start_batch_job(
            settings, IRIS, tmp_path / "a.csv", bundle=bundle.label, restrict_input=False
        )


def test_get_of_an_unknown_job(settings):
    from deploystudio.errors import BatchJobNotFoundError

    with pytest.raises(BatchJobNotFoundError, match="batch list"):
        get_batch_job(settings, "batch-nope")
