"""Adaptive batching in an endpoint's front (deployment/local/front_batching.py).

The first tests read, merge and split bodies without a server. The others run a real local
endpoint (LocalTarget: the front process, the Azure ML inference server and MLflow's scoring
server on 127.0.0.1) whose deployments batch, and compare every answer the front gives a
request sent among others with the answer the deployment's server gives that request alone.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.models import Model, infer_signature

from deploystudio.checks import CheckStatus
from deploystudio.deployment.adaptive_batching import (
    AZURE_NOTE,
    BatchSettings,
    batch_settings,
    signature_batching_check,
)
from deploystudio.deployment.base import DeploymentState
from deploystudio.deployment.deploy_request import DeployRequest, request_problems
from deploystudio.deployment.local.front_batching import merged_body, read_rows, split_answer
from deploystudio.deployment.local.target import LocalTarget
from deploystudio.errors import DeploymentConfigError
from deploystudio.prediction import local_model_path
from tests.conftest import settings_for

JSON = b"application/json"
IRIS = "models:/iris-classifier/1"
RISK = "models:/cancer-risk-scorer/1"
BATCHING = {"max_batch_size": 16, "max_wait_ms": 300}
CALLERS = 8


# -- bodies, without a server --------------------------------------------------------------


def body(value) -> bytes:
    return json.dumps(value).encode()


def test_requests_with_the_same_columns_and_params_share_a_key_in_every_format():
    split = {"columns": ["a", "b"], "data": [[1, 2]]}
    for form in ("input_data", "dataframe_split"):
        one = read_rows(body({form: split}), JSON)
        two = read_rows(body({form: {"columns": ["a", "b"], "data": [[3, 4], [5, 6]]}}), JSON)
        assert one is not None and two is not None
        assert one.key == two.key and len(two.rows) == 2
        other = read_rows(body({form: {"columns": ["b", "a"], "data": [[1, 2]]}}), JSON)
        assert other is not None and other.key != one.key
    for form in ("dataframe_records", "instances", "inputs"):
        one = read_rows(body({form: [{"a": 1, "b": 2}]}), JSON)
        two = read_rows(body({form: [{"a": 3, "b": 4}]}), JSON)
        assert one is not None and two is not None and one.key == two.key
        rows = read_rows(body({form: [[1, 2]]}), JSON)
        assert rows is not None and rows.key != one.key
    dataframe = read_rows(body({"dataframe_split": split}), JSON)
    azure = read_rows(body({"input_data": split}), JSON)
    assert dataframe is not None and azure is not None and dataframe.key != azure.key


def test_params_that_differ_make_different_keys():
    split = {"columns": ["a"], "data": [[1]]}
    low = read_rows(body({"dataframe_split": split, "params": {"threshold": 0.1}}), JSON)
    high = read_rows(body({"dataframe_split": split, "params": {"threshold": 0.9}}), JSON)
    none = read_rows(body({"dataframe_split": split}), JSON)
    same = read_rows(body({"params": {"threshold": 0.1}, "dataframe_split": split}), JSON)
    assert low is not None and high is not None and none is not None and same is not None
    assert len({low.key, high.key, none.key}) == 3
    assert same.key == low.key


@pytest.mark.parametrize(
    "raw, kind",
    [
        (body({"dataframe_split": {"columns": ["a"], "data": [[1]]}}), b"text/csv"),
        (b"a\n1\n", b"text/csv"),
        (b"{not json", JSON),
        (body({"dataframe_split": {"columns": ["a"], "index": [7], "data": [[1]]}}), JSON),
        (body({"dataframe_split": {"columns": ["a"], "data": [[1]]}, "extra": 1}), JSON),
        (body({"inputs": {"a": [1, 2]}}), JSON),  # columns as a dict: not rows
        (body({"inputs": [1, 2]}), JSON),  # a tensor of scalars
        (body({"instances": [{"a": 1}, {"b": 2}]}), JSON),  # rows that differ
        (body({"input_data": {"columns": ["a", "b"], "data": [[1]]}}), JSON),
        (body({"dataframe_split": {"columns": ["a"], "data": []}}), JSON),
        (body([1, 2]), JSON),
    ],
)
def test_bodies_the_front_cannot_read_as_rows_go_alone(raw, kind):
    assert read_rows(raw, kind) is None


def test_a_merged_body_holds_every_row_in_order_and_the_answer_splits_back():
    parts = [
        read_rows(body({"input_data": {"columns": ["a"], "data": rows}, "params": {"p": 1}}), JSON)
        for rows in ([[1]], [[2], [3]], [[4]])
    ]
    assert all(parts)
    merged = json.loads(merged_body(parts))  # type: ignore[arg-type]
    assert merged == {
        "input_data": {"columns": ["a"], "data": [[1], [2], [3], [4]]},
        "params": {"p": 1},
    }
    wrapped = split_answer(body({"predictions": ["w", "x", "y", "z"]}), [1, 2, 1])
    assert wrapped == [
        body({"predictions": ["w"]}),
        body({"predictions": ["x", "y"]}),
        body({"predictions": ["z"]}),
    ]
    bare = split_answer(body([{"k": 1}, {"k": 2}]), [1, 1])
    assert bare == [body([{"k": 1}]), body([{"k": 2}])]
    # Not one prediction per row, or not a list: the batch is not split (each goes alone).
    assert split_answer(body({"predictions": [1, 2]}), [1, 2]) is None
    assert split_answer(body({"predictions": {"a": [1, 2]}}), [1, 1]) is None
    assert split_answer(body({"predictions": [1, 2], "extra": 1}), [1, 1]) is None
    assert split_answer(b"not json", [1]) is None


def test_only_models_with_one_prediction_per_row_qualify():
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    per_row = signature_batching_check(infer_signature(frame, pd.Series([0, 1])))
    assert per_row.status is CheckStatus.PASS
    frame_out = signature_batching_check(infer_signature(frame, frame))
    assert frame_out.status is CheckStatus.PASS
    assert signature_batching_check(None).status is CheckStatus.WARN
    assert "signature" in signature_batching_check(None).detail
    no_outputs = signature_batching_check(infer_signature(frame))
    assert no_outputs.status is CheckStatus.WARN and "no outputs" in no_outputs.detail

    tensors = signature_batching_check(infer_signature(np.zeros((2, 8, 8), np.float32), [1, 2]))
    assert tensors.status is CheckStatus.WARN and "tensors" in tensors.detail
    fixed = signature_batching_check(infer_signature(frame, np.zeros(4)))
    assert fixed.status is CheckStatus.PASS  # (-1,): infer_signature cannot tell; the front checks


def test_settings_are_checked_and_only_written_when_on():
    assert batch_settings({}) == BatchSettings(1, 0)
    assert batch_settings({"max_batch_size": 8, "max_wait_ms": 5}) == BatchSettings(8, 5)
    for bad in ({"max_batch_size": 0}, {"max_batch_size": 1000}, {"max_wait_ms": -1}):
        with pytest.raises(DeploymentConfigError):
            batch_settings(bad)
    with pytest.raises(DeploymentConfigError):
        batch_settings({"max_batch_size": True})
    request = DeployRequest(IRIS, "ep-one", "blue", True, max_batch_size=8, max_wait_ms=2)
    assert request.config()["settings"] == {
        "instance_count": 1,
        "max_batch_size": 8,
        "max_wait_ms": 2,
    }
    assert "max_batch_size" not in DeployRequest(IRIS, "ep-one", "blue", True).config()["settings"]
    wrong = DeployRequest(IRIS, "ep-one", "blue", True, max_batch_size=0, max_wait_ms=5000)
    problems = " ".join(request_problems(wrong, [], []))
    assert "max batch size" in problems and "max wait" in problems
    assert "no such setting" in AZURE_NOTE


# -- a real endpoint -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory, settings, registry, seeded):
    home = tmp_path_factory.mktemp("batching")
    local = settings_for(home, MLFLOW_TRACKING_URI=settings.tracking_uri)
    target = LocalTarget(local, registry=registry, start_timeout_seconds=120)
    try:
        target.create_endpoint("batching")
        plan = {"azml": ("azureml", IRIS), "mlfl": ("mlflow", IRIS), "risk": ("mlflow", RISK)}
        for name, (runtime, uri) in plan.items():
            record = target.create_deployment(
                name, uri, "batching", {"runtime": runtime, "settings": dict(BATCHING)}
            )
            assert record.state is DeploymentState.READY, (record.reason, record.log_tail)
        target.update_endpoint("batching", {"traffic": {"azml": 100}})
        yield target, local
    finally:
        target.stop_all()
        for pid in _processes_under(home):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _processes_under(folder: Path) -> list[int]:
    import psutil

    found = []
    for process in psutil.process_iter(["pid", "cwd"]):
        cwd = process.info["cwd"]
        if cwd and cwd.startswith(str(folder)):
            found.append(process.info["pid"])
    return found


def post(port: int, path: str, data: bytes, headers: dict[str, str]) -> tuple[int, object]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, data, {"Content-Type": "application/json", **headers})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def through_front(target: LocalTarget, deployment: str, bodies: list[bytes]) -> list[tuple]:
    """Every body sent at once through the front (one connection each), named deployment."""
    endpoint = target.get_endpoint("batching")
    assert endpoint.scoring_uri is not None
    port = int(endpoint.scoring_uri.split(":")[-1].split("/")[0])
    headers = {
        "Authorization": f"Bearer {target.get_keys('batching').primary}",
        "azureml-model-deployment": deployment,
    }
    barrier = threading.Barrier(len(bodies))

    def send(data: bytes) -> tuple:
        barrier.wait(timeout=30)
        return post(port, "/score", data, headers)

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(send, bodies))


def alone(target: LocalTarget, deployment: str, bodies: list[bytes]) -> list[tuple]:
    """Every body sent to the deployment's server itself, one after the other: no front."""
    record = target.get_deployment(deployment, "batching")
    path = "/score" if record.runtime.value == "azureml" else "/invocations"
    assert record.port is not None
    return [post(record.port, path, data, {}) for data in bodies]


def batching_counts(target: LocalTarget) -> dict:
    return target.get_metrics("batching")["batching"]


def rows_of(settings, uri: str, count: int, registry=None) -> pd.DataFrame:
    path = local_model_path(uri, settings)
    example = Model.load(str(path)).load_input_example(str(path))
    frame = example[0] if isinstance(example, tuple) else example
    # Varied rows: the example's rows scaled, so that predictions differ between callers.
    rows = pd.concat([frame * (0.6 + 0.15 * i) for i in range(2)], ignore_index=True)
    return rows.head(count)


def bodies_in(form: str, frame: pd.DataFrame, sizes: list[int], params=None) -> list[bytes]:
    out, start = [], 0
    for size in sizes:
        part = frame.iloc[start : start + size]
        start += size
        if form in ("input_data", "dataframe_split"):
            value = {"columns": list(part.columns), "data": part.values.tolist()}
        else:
            value = part.to_dict(orient="records")
        payload = {form: value}
        if params is not None:
            payload["params"] = params
        out.append(json.dumps(payload).encode())
    return out


SIZES = [1, 1, 2, 1, 1, 3, 1]


@pytest.mark.parametrize(
    "deployment, form",
    [
        ("azml", "input_data"),
        ("mlfl", "dataframe_split"),
        ("mlfl", "dataframe_records"),
        ("mlfl", "instances"),
        ("mlfl", "inputs"),
    ],
)
def test_batched_answers_are_the_answers_each_request_gets_alone(endpoint, deployment, form):
    target, settings = endpoint
    frame = rows_of(settings, IRIS, sum(SIZES))
    bodies = bodies_in(form, frame, SIZES)
    expected = alone(target, deployment, bodies)
    assert {status for status, _ in expected} == {200}, expected
    before = batching_counts(target)
    answers = through_front(target, deployment, bodies)
    assert answers == expected
    after = batching_counts(target)
    # They went together: fewer model calls than requests, none sent again alone.
    assert after["batches"] > before["batches"], (before, after)
    assert after["batched_requests"] - before["batched_requests"] >= 2
    assert after["retried_alone"] == before["retried_alone"]


def test_one_bad_request_in_a_batch_fails_alone(endpoint):
    target, settings = endpoint
    frame = rows_of(settings, IRIS, CALLERS)
    bodies = bodies_in("dataframe_split", frame, [1] * CALLERS)
    bad = json.loads(bodies[3])
    bad["dataframe_split"]["data"][0][0] = "not a number"
    bodies[3] = json.dumps(bad).encode()
    expected = alone(target, "mlfl", bodies)
    assert expected[3][0] == 400 and {s for i, (s, _) in enumerate(expected) if i != 3} == {200}
    before = batching_counts(target)
    answers = through_front(target, "mlfl", bodies)
    assert [a[0] for a in answers] == [e[0] for e in expected]
    assert answers == expected
    after = batching_counts(target)
    assert after["retried_alone"] > before["retried_alone"], (before, after)


def test_requests_whose_params_differ_are_not_batched_together(endpoint):
    target, settings = endpoint
    frame = rows_of(settings, RISK, 4)
    low = bodies_in("dataframe_split", frame, [1] * 4, {"threshold": 0.0})
    high = bodies_in("dataframe_split", frame, [1] * 4, {"threshold": 1.0})
    bodies = [b for pair in zip(low, high, strict=True) for b in pair]
    expected = alone(target, "risk", bodies)
    assert {status for status, _ in expected} == {200}
    labels = [[row["label"] for row in answer["predictions"]] for _, answer in expected]
    assert labels[0::2] != labels[1::2]  # the threshold changes answers: mixing would show
    answers = through_front(target, "risk", bodies)
    assert [status for status, _ in answers] == [status for status, _ in expected]
    for (_, got), (_, alone_answer) in zip(answers, expected, strict=True):
        # Labels exactly (each request kept its own threshold). Probabilities to 1e-12: a
        # matrix of 8 rows goes through BLAS in another order than a row alone, so a float can
        # differ in its last digit (seen: 2.6463776509342225e-06 vs ...218e-06).
        assert [r["label"] for r in got["predictions"]] == [
            r["label"] for r in alone_answer["predictions"]
        ]
        assert [r["probability"] for r in got["predictions"]] == pytest.approx(
            [r["probability"] for r in alone_answer["predictions"]], rel=1e-12, abs=1e-15
        )


def test_models_without_one_prediction_per_row_are_refused_with_the_reason(endpoint):
    target, _ = endpoint
    for name, uri, why in (
        ("nosig", "models:/wine-no-signature/1", "signature"),
        ("tensor", "models:/digits-tensor/1", "tensors"),
    ):
        record = target.create_deployment(
            name, uri, "batching", {"runtime": "mlflow", "settings": {"max_batch_size": 4}}
        )
        assert record.state is DeploymentState.FAILED
        assert why in (record.reason or "") and "max_batch_size" in (record.reason or "")
        target.delete_deployment(name, "batching")
