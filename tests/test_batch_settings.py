"""Batch settings (Azure's names, defaults, ranges), their Azure YAML export, and input roots.
No job runs here: these are the checks made before a job starts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from deploystudio.deployment.batch.azure_yaml import (
    batch_deployment,
    batch_deployment_yaml,
    batch_endpoint_yaml,
)
from deploystudio.deployment.batch.inputs import check_within_roots, input_files, mini_batches
from deploystudio.deployment.batch.jobs import start_batch_job
from deploystudio.deployment.batch.settings import BatchSettings, OutputAction
from deploystudio.errors import BatchInputError, BatchSettingsError
from tests.conftest import AZURE_FIXTURES, settings_for

IRIS = "models:/iris-classifier/2"


def test_defaults_are_azures():
    settings = BatchSettings()
    assert settings.mini_batch_size == 10
    assert settings.max_concurrency_per_instance == 1
    assert settings.output_action is OutputAction.APPEND_ROW
    assert settings.output_file_name == "predictions.csv"
    assert (settings.max_retries, settings.timeout) == (3, 30)
    assert settings.error_threshold == -1
    assert settings.logging_level == "info"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"mini_batch_size": 0}, "mini_batch_size must be a whole number from 1"),
        ({"max_concurrency_per_instance": True}, "max_concurrency_per_instance"),
        ({"error_threshold": -2}, "error_threshold must be a whole number from -1"),
        ({"output_action": "append"}, "output_action 'append' is not one of"),
        ({"output_file_name": "../x.csv"}, "must be a plain file name"),
        ({"logging_level": "loud"}, "logging_level 'loud'"),
        ({"batch_size": 3}, "Unknown batch setting"),
    ],
)
def test_invalid_settings_say_what_is_allowed(values, message):
    with pytest.raises(BatchSettingsError, match=message):
        BatchSettings.from_dict(values)


def test_settings_round_trip_and_take_azures_nested_retry_settings():
    fixture = yaml.safe_load((AZURE_FIXTURES / "yaml" / "batch-deployment.yml").read_text())
    settings = BatchSettings.from_dict(fixture["settings"])
    assert (settings.max_retries, settings.timeout, settings.mini_batch_size) == (3, 300, 2)
    assert BatchSettings.from_dict(settings.as_dict()) == settings


def test_export_matches_the_azure_example_and_loads_in_azure_ai_ml():
    fixture = yaml.safe_load((AZURE_FIXTURES / "yaml" / "batch-deployment.yml").read_text())
    settings = BatchSettings.from_dict(fixture["settings"])
    deployment = batch_deployment(
        settings,
        "models:/heart-classifier/3",
        "heart-classifier-batch",
        "classifier-mlflow",
        instance_count=2,
    )
    exported = yaml.safe_load(batch_deployment_yaml(deployment))
    assert exported["$schema"] == fixture["$schema"]
    assert exported["settings"] == fixture["settings"]
    assert exported["model"] == "azureml:heart-classifier:3"
    assert exported["type"] == "model"
    assert exported["resources"]["instance_count"] == 2
    assert set(exported) <= set(fixture) | {"name", "endpoint_name"}
    endpoint = yaml.safe_load(batch_endpoint_yaml("heart-classifier-batch"))
    assert endpoint["name"] == "heart-classifier-batch"
    assert endpoint["auth_mode"] == "aad_token"


def test_export_needs_a_registered_version():
    with pytest.raises(BatchSettingsError, match="not a registered model version"):
        batch_deployment(BatchSettings(), "/some/folder", "iris-batch", "blue")


def test_input_files_are_the_folders_own_files_sorted(tmp_path):
    (tmp_path / "b.csv").write_text("x\n1\n")
    (tmp_path / "a.parquet").write_bytes(b"")
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "c.csv").write_text("x\n1\n")
    assert [p.name for p in input_files(tmp_path)] == ["a.parquet", "b.csv"]
    assert input_files(tmp_path / "b.csv") == [tmp_path / "b.csv"]
    with pytest.raises(BatchInputError, match="does not exist"):
        input_files(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BatchInputError, match="holds no files"):
        input_files(tmp_path / "empty")
    assert mini_batches([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]


def test_roots_refuse_dot_dot_and_symlinks_out(tmp_path):
    root = tmp_path / "root"
    (root / "ok").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "link")
    assert check_within_roots(root / "ok", (root,)) == (root / "ok").resolve()
    for path in (root / ".." / "outside", root / "link", Path("/etc")):
        with pytest.raises(BatchInputError, match="outside the folders batch jobs may read"):
            check_within_roots(path, (root,))


def test_a_page_job_only_reads_under_the_configured_roots(tmp_path, seeded):
    settings = settings_for(tmp_path / "home")
    roots = settings.allowed_batch_input_roots
    assert roots == (tmp_path / "home" / "batch-inputs",)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "a.csv").write_text("x\n1\n")
    with pytest.raises(BatchInputError, match="outside the folders"):
        start_batch_job(settings, IRIS, outside)
    # A file linked into the root from outside is refused too.
    inside = roots[0] / "job"
    inside.mkdir(parents=True)
    os.symlink(outside / "a.csv", inside / "a.csv")
    with pytest.raises(BatchInputError, match="outside the folders"):
        start_batch_job(settings, IRIS, inside)
    assert not (settings.home / "batch-jobs").exists()


def test_roots_come_from_the_environment(tmp_path):
    settings = settings_for(
        tmp_path, DEPLOYSTUDIO_BATCH_INPUT_ROOTS=f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}"
    )
    assert settings.allowed_batch_input_roots == (tmp_path / "a", tmp_path / "b")
