"""Batch jobs that time out, retry and get cancelled, driven through `deploystudio batch ...`
in-process, with a real model that sleeps on the inputs that ask for it."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from deploystudio.cli.main import main
from deploystudio.deployment.batch.jobs import batch_job_files, get_batch_job, wait_for_batch_job

# A model from code (MLflow's models-from-code): the worker imports nothing from the tests.
SLEEPY_MODEL = """
import os
import time

import mlflow
from mlflow.pyfunc import PythonModel


class Sleepy(PythonModel):
    def predict(self, context, model_input, params=None):
        for mode, flag in zip(model_input["mode"], model_input["flag"]):
            if mode == "once" and not os.path.exists(flag):
                open(flag, "w").close()
                time.sleep(600)
            elif mode == "always":
                time.sleep(600)
            elif mode == "slow":
                time.sleep(1.5)
        return (model_input["x"] * 2).to_numpy()


mlflow.models.set_model(Sleepy())
"""


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def sleepy_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sleepy")
    code = folder / "sleepy.py"
    code.write_text(SLEEPY_MODEL)
    mlflow.pyfunc.save_model(str(folder / "model"), python_model=str(code))
    return folder / "model"


def write_rows(path: Path, mode: str, flag: Path, rows: int = 3) -> None:
    pd.DataFrame({"x": range(rows), "mode": mode, "flag": str(flag)}).to_csv(path, index=False)


@pytest.fixture
def shared_flags():
    """A folder the model's workers can write and that outlives each of them: behind the
    sandbox a worker writes only its own folders, /dev/shm aside (deploystudio.worker.sandbox)."""
    folder = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="deploystudio-test-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_mini_batch_that_times_out_is_retried(
    capsys, settings, sleepy_model, tmp_path, shared_flags
):
    folder = tmp_path / "in"
    folder.mkdir()
    write_rows(folder / "a-fine.csv", "fast", tmp_path / "none")
    write_rows(folder / "b-once.csv", "once", shared_flags / "slept-once")
    write_rows(folder / "c-always.csv", "always", tmp_path / "none")
    code, out, _ = run_cli(
        capsys, "batch", "run", str(sleepy_model), "--input", str(folder),
        "--output", str(tmp_path / "out"), "--mini-batch-size", "1", "--timeout", "4",
        "--max-retries", "1", "--json",
    )  # fmt: skip
    job = json.loads(out)
    assert code == 0, job
    assert job["state"] == "completed"
    files = {f.name: f for f in batch_job_files(settings, job["id"])}
    assert (files["a-fine.csv"].state, files["a-fine.csv"].attempts) == ("done", 1)
    # Timed out once, then succeeded on its retry.
    assert (files["b-once.csv"].state, files["b-once.csv"].attempts) == ("done", 2)
    # Timed out on every attempt: failed after max_retries retries.
    assert (files["c-always.csv"].state, files["c-always.csv"].attempts) == ("failed", 2)
    assert "failed 2 time(s) (max_retries 1)" in files["c-always.csv"].error
    assert "did not answer within 4 s" in files["c-always.csv"].error
    output = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert sorted(set(output["file_name"])) == ["a-fine.csv", "b-once.csv"]
    assert output[output["file_name"] == "b-once.csv"]["prediction"].tolist() == [0, 2, 4]


def test_run_detached_list_show_and_cancel(capsys, settings, sleepy_model, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(12):
        write_rows(folder / f"f{i:02d}.csv", "slow", tmp_path / "none", rows=1)
    code, out, _ = run_cli(
        capsys, "batch", "run", str(sleepy_model), "--input", str(folder),
        "--output", str(tmp_path / "out"), "--mini-batch-size", "1", "--detach", "--json",
    )  # fmt: skip
    assert code == 0
    job_id = json.loads(out)["id"]
    deadline = time.monotonic() + 180
    while get_batch_job(settings, job_id).files_done < 2:
        assert time.monotonic() < deadline, "the job did not finish two files in time"
        time.sleep(0.3)

    code, out, _ = run_cli(capsys, "batch", "list")
    assert code == 0 and job_id in out and "running" in out
    code, out, _ = run_cli(capsys, "batch", "show", job_id, "--json")
    shown = json.loads(out)
    assert shown["state"] == "running" and len(shown["files"]) == 12

    code, out, _ = run_cli(capsys, "batch", "cancel", job_id)
    assert code == 0 and "cancelled" in out
    job = get_batch_job(settings, job_id)
    assert job.state == "cancelled"
    done = [f.name for f in batch_job_files(settings, job_id) if f.state == "done"]
    assert 2 <= len(done) < 12
    # What finished before the cancel is kept, and only that.
    output = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert sorted(set(output["file_name"])) == sorted(done)
    assert job.summary["not_scored_files"]
    assert f"{len(done)} of 12 file(s) finished and are kept" in job.reason
    code, _, err = run_cli(capsys, "batch", "cancel", job_id)
    assert code == 2 and "already cancelled" in err


def test_run_waits_and_reports(capsys, settings, seeded, tmp_path):
    frame = pd.DataFrame(
        [[5.1, 3.5, 1.4, 0.2]] * 4,
        columns=["sepal_length", "sepal_width", "petal_length", "petal_width"],
    )
    frame.to_parquet(tmp_path / "iris.parquet")
    code, out, _ = run_cli(
        capsys, "batch", "run", "models:/iris-classifier/2", "--input",
        str(tmp_path / "iris.parquet"), "--output", str(tmp_path / "out"),
    )  # fmt: skip
    assert code == 0, out
    assert "completed" in out and "1 file(s) scored, 0 failed, 4 row(s)" in out
    assert f"Predictions: {tmp_path / 'out' / 'predictions.csv'}" in out
    job_id = out.split("Batch job ", 1)[1].split()[0]
    code, out, _ = run_cli(
        capsys, "batch", "export", job_id, "--endpoint", "iris-batch", "--deployment", "blue"
    )
    assert code == 0 and "modelBatchDeployment.schema.json" in out
    assert "azureml:iris-classifier:2" in out
    finished = wait_for_batch_job(settings, job_id, timeout_seconds=1)
    assert finished.state == "completed"


def wrong_columns(path: Path) -> None:
    pd.DataFrame({"a": [1, 2], "b": [3, 4]}).to_csv(path, index=False)


def test_a_run_where_every_file_failed_exits_non_zero_and_names_no_output(
    capsys, settings, seeded, tmp_path
):
    for name in ("one.csv", "two.csv"):
        wrong_columns(tmp_path / name)
    out_dir = tmp_path / "out"
    code, out, _ = run_cli(
        capsys, "batch", "run", "models:/iris-classifier/2", "--input", str(tmp_path),
        "--output", str(out_dir), "--error-threshold", "-1",
    )  # fmt: skip
    assert code == 1, out
    assert "0 file(s) scored, 2 failed" in out
    assert "Predictions:" not in out and "no predictions file was written" in out
    code, out, _ = run_cli(
        capsys, "batch", "run", "models:/iris-classifier/2", "--input", str(tmp_path),
        "--output", str(out_dir), "--error-threshold", "0", "--workers", "1",
    )  # fmt: skip
    assert code == 1, out
    assert "predictions.csv" not in out, out
    assert not (out_dir / "predictions.csv").exists()


def test_a_model_that_does_not_load_reports_the_files_not_scored(capsys, tmp_path):
    model = tmp_path / "broken"
    model.mkdir()
    (model / "MLmodel").write_text("flavors:\n  python_function:\n    loader_module: no_such_xyz\n")
    inputs = tmp_path / "in"
    inputs.mkdir()
    for index in range(3):
        wrong_columns(inputs / f"f{index}.csv")
    code, out, _ = run_cli(
        capsys, "batch", "run", str(model), "--input", str(inputs), "--output",
        str(tmp_path / "out"), "--workers", "1", "--mini-batch-size", "1",
    )  # fmt: skip
    assert code == 1, out
    assert "failed: 0/3 file(s) (0 failed)" not in out
    assert "3 not scored" in out or "2 not scored" in out, out
    assert "predictions.csv" not in out


def test_links_are_neither_read_as_inputs_nor_written_as_outputs(
    capsys, settings, seeded, tmp_path
):
    private = tmp_path / "private.txt"
    private.write_text("PRIVATE-FIRST-LINE,x\n1,2\n")
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "linked.csv").symlink_to(private)
    pd.DataFrame(
        [[5.1, 3.5, 1.4, 0.2]],
        columns=["sepal_length", "sepal_width", "petal_length", "petal_width"],
    ).to_csv(inputs / "iris.csv", index=False)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    elsewhere = tmp_path / "elsewhere.csv"
    (out_dir / "predictions.csv").symlink_to(elsewhere)  # dangling
    code, out, err = run_cli(
        capsys, "batch", "run", "models:/iris-classifier/2", "--input", str(inputs),
        "--output", str(out_dir),
    )  # fmt: skip
    assert code == 1, out
    assert "PRIVATE-FIRST-LINE" not in out + err
    assert "linked.csv: this file is a symbolic link" in out
    assert "is a symbolic link; batch outputs are never written through links" in out
    assert not elsewhere.exists()
