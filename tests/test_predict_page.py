"""The Predict page through AppTest against the seeded registry, and its pure helpers."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from components import services
from components.payload_editor import (
    SOURCE_FORM,
    SOURCE_JSON,
    SOURCE_UPLOAD,
    editor_key,
    source_key,
)
from components.payload_form import form_frame
from components.payload_json import default_request_text
from components.payload_upload import parsed_upload_key
from components.prediction_chart import (
    ChartKind,
    chart_kind,
    prediction_figure,
    results_frame,
)
from components.prediction_results import environment_problems, format_seconds
from deploystudio.inspection import Check, CheckStatus, SchemaField, SignatureInfo
from deploystudio.payload_formats import ModelInput, PayloadFormat
from deploystudio.payloads import parse_payload
from deploystudio.snippets import (
    AZURE_SCORING_URL,
    BODY_FILE,
    LOCAL_SCORING_URL,
    pretty_json,
    request_snippets,
)
from tests.conftest import REPO_ROOT
from tests.page_support import (  # noqa: F401 (fixtures)
    fresh_caches,
    prediction_worker_stopped_at_the_end,
)

APP = str(REPO_ROOT / "app.py")
PREDICT = "views/predict.py"
IRIS_URI = "models:/iris-classifier/1"
IRIS_COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def open_predict(query_params: dict, source: str | None = None, uri: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    at.switch_page(PREDICT)
    for name, value in query_params.items():
        at.query_params[name] = value
    if source:
        at.session_state[source_key(uri)] = source
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def predict(at: AppTest, uri: str) -> AppTest:
    at.button(key=f"{editor_key(uri)}_predict").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def results_table(at: AppTest, column: str = "prediction") -> pd.DataFrame:
    return next(d.value for d in at.dataframe if column in d.value.columns)


def iris_query() -> dict:
    return {"model": "iris-classifier", "version": "1"}


# ----------------------------------------------------------------------------- the page


def test_example_predicts_a_table_a_chart_and_timing(seeded):
    at = open_predict(iris_query())
    assert at.title[0].value == "Preview predictions"
    assert at.subheader[0].value == "iris-classifier · version 1"
    assert "runs code from its artifacts" in at.caption[0].value
    predict(at, IRIS_URI)
    assert not at.error, [e.value for e in at.error]
    table = results_table(at)
    assert list(table.columns) == [*IRIS_COLUMNS, "prediction"]
    assert len(table) == 5 and set(table["prediction"]) <= {"setosa", "versicolor", "virginica"}
    assert at.get("plotly_chart")
    assert [m.label for m in at.metric] == ["Waited", "Model load", "Predict"]
    assert any(b.label == "Download predictions (CSV)" for b in at.get("download_button"))


def test_the_environment_chosen_and_why_show_next_to_the_result(seeded):
    at = open_predict(iris_query())
    predict(at, IRIS_URI)
    captions = [c.value for c in at.caption]
    # The demo model was logged with this app's MLflow and scikit-learn: auto keeps the app's.
    assert any("The app's environment: it already has every version" in c for c in captions)
    at.segmented_control(key=f"{editor_key(IRIS_URI)}_env").set_value("app").run()
    predict(at, IRIS_URI)
    assert not at.error, [e.value for e in at.error]
    captions = [c.value for c in at.caption]
    assert any("The app's environment, as asked" in c for c in captions)
    assert len(results_table(at)) == 5


def test_the_time_shown_first_is_the_time_the_user_waited(seeded, monkeypatch):
    # A worker that takes 2 s more to answer, as a cold one does: the wait must show them.
    worker = services.prediction_worker()
    slow_predict = worker.predict

    def slower(*args, **kwargs):
        time.sleep(2)
        return slow_predict(*args, **kwargs)

    monkeypatch.setattr(worker, "predict", slower)
    at = open_predict(iris_query())
    predict(at, IRIS_URI)
    assert not at.error, [e.value for e in at.error]
    waited = next(m.value for m in at.metric if m.label == "Waited")
    assert waited.endswith(" s") and float(waited.removesuffix(" s")) >= 2, waited
    assert any(c.value.startswith("The other ") for c in at.caption)


def test_snippets_hold_the_azure_and_mlflow_bodies_and_calls(seeded):
    at = predict(open_predict(iris_query()), IRIS_URI)
    codes = [c.value for c in at.code]
    azure = json.loads(codes[0])
    assert azure["input_data"]["columns"] == IRIS_COLUMNS
    assert len(azure["input_data"]["data"]) == 5
    assert "dataframe_split" in json.loads(codes[1])
    assert any(LOCAL_SCORING_URL in c and "Bearer <KEY>" in c for c in codes)
    assert any("azureml-model-deployment: <deployment>" in c for c in codes)


def test_json_editor_predicts_the_azure_sample_on_the_azure_model(
    seeded, monkeypatch, tmp_path, azure_diabetes_model
):
    shutil.copytree(azure_diabetes_model, tmp_path / "model")
    monkeypatch.setenv("DEPLOYSTUDIO_MODEL_ROOTS", str(tmp_path))
    uri = str((tmp_path / "model").resolve())
    at = open_predict({"uri": uri}, source=SOURCE_JSON, uri=uri)
    body = (azure_diabetes_model.parent / "sample-request.json").read_text()
    at.text_area[0].input(body)
    predict(at, uri)
    assert not at.error, [e.value for e in at.error]
    table = results_table(at)
    assert list(table.columns)[:3] == ["age", "sex", "bmi"] and len(table) == 1
    # The fixture was saved on Python 3.12 with scikit-learn 1.1.2: said beside the result.
    environment = next(w.value for w in at.warning if "differs" in w.value)
    assert "Python version" in environment and "Saved with scikit-learn" in environment


def test_malformed_json_is_an_error_with_its_line_and_the_text_stays(seeded):
    at = open_predict(iris_query(), source=SOURCE_JSON, uri=IRIS_URI)
    assert json.loads(at.text_area[0].value)["input_data"]["columns"] == IRIS_COLUMNS
    broken = '{\n  "input_data": {"columns": ["sepal_length"],, "data": []}\n}'
    at.text_area[0].input(broken)
    predict(at, IRIS_URI)
    assert "line 2" in at.error[0].value and "column" in at.error[0].value
    assert at.text_area[0].value == broken
    assert not [d for d in at.dataframe if "prediction" in d.value.columns]
    at.run()  # any rerun keeps the text
    assert at.text_area[0].value == broken


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"input_dta": {"columns": [], "data": []}}', "Unknown top-level key"),
        ('{"input_data": {"columns": ["sepal_length"], "data": [[1.0]]}}', "Missing required"),
        ("   ", "empty"),
    ],
)
def test_bad_bodies_are_messages_not_tracebacks(seeded, body, message):
    at = open_predict(iris_query(), source=SOURCE_JSON, uri=IRIS_URI)
    at.text_area[0].input(body)
    predict(at, IRIS_URI)
    assert message in at.error[0].value


def test_reset_puts_the_example_back_in_the_editor(seeded):
    at = open_predict(iris_query(), source=SOURCE_JSON, uri=IRIS_URI)
    example = at.text_area[0].value
    at.text_area[0].input("{}").run()
    at.button(key=f"{editor_key(IRIS_URI)}_json_reset").click().run()
    assert at.text_area[0].value == example


def test_threshold_param_in_the_form_changes_the_labels(seeded):
    uri = "models:/cancer-risk-scorer/1"
    at = open_predict({"model": "cancer-risk-scorer", "version": "1"}, SOURCE_FORM, uri)
    threshold = at.number_input(key=f"{editor_key(uri)}_form_param_threshold")
    assert threshold.value == 0.5
    threshold.set_value(0.0)
    predict(at, uri)
    assert set(results_table(at, "label")["label"]) == {"malignant"}
    at.number_input(key=f"{editor_key(uri)}_form_param_threshold").set_value(1.01)
    predict(at, uri)
    assert set(results_table(at, "label")["label"]) == {"benign"}
    azure = json.loads(at.code[0].value)
    assert azure["params"] == {"threshold": 1.01}


def test_form_with_several_rows_predicts_each_row(seeded):
    at = open_predict(iris_query(), SOURCE_FORM, IRIS_URI)
    at.radio(key=f"{editor_key(IRIS_URI)}_form_mode").set_value("Several rows").run()
    predict(at, IRIS_URI)
    assert len(results_table(at)) == 5


def iris_csv(rows: int = 3) -> bytes:
    lines = [",".join(IRIS_COLUMNS), *["5.1,3.5,1.4,0.2"] * rows]
    return ("\n".join(lines) + "\n").encode()


def test_uploaded_csv_is_parsed_once_and_predicts(seeded):
    at = open_predict(iris_query(), SOURCE_UPLOAD, IRIS_URI)
    at.file_uploader(key=f"{editor_key(IRIS_URI)}_upload").upload(
        "rows.csv", iris_csv(), "text/csv"
    )
    at.run()
    assert not at.error, [e.value for e in at.error]
    assert any("read as CSV file: 3 row(s) × 4 column(s)" in c.value for c in at.caption)
    parsed = at.session_state[parsed_upload_key(editor_key(IRIS_URI))]
    assert parsed.model_input is not None and len(parsed.model_input.data) == 3

    at.run()  # a rerun (any widget change) reuses the parse: the very same object
    assert at.session_state[parsed_upload_key(editor_key(IRIS_URI))] is parsed
    predict(at, IRIS_URI)
    assert at.session_state[parsed_upload_key(editor_key(IRIS_URI))] is parsed
    assert len(results_table(at)) == 3

    uploader = at.file_uploader(key=f"{editor_key(IRIS_URI)}_upload")
    uploader.set_value(("rows.csv", iris_csv(2), "text/csv")).run()  # new content: parsed again
    again = at.session_state[parsed_upload_key(editor_key(IRIS_URI))]
    assert again is not parsed and len(again.model_input.data) == 2


def test_bad_upload_is_a_message_and_predict_says_there_is_no_input(seeded):
    at = open_predict(iris_query(), SOURCE_UPLOAD, IRIS_URI)
    bad = iris_csv().replace(b"3.5", b"abc", 1)
    at.file_uploader(key=f"{editor_key(IRIS_URI)}_upload").upload("rows.csv", bad, "text/csv")
    at.run()
    assert "Column 'sepal_width' expects double; row 1" in at.error[0].value
    predict(at, IRIS_URI)
    assert any("has no input to send" in w.value for w in at.warning)


def test_invalid_and_unknown_params_in_the_json_body(seeded):
    uri = "models:/cancer-risk-scorer/1"
    at = open_predict({"model": "cancer-risk-scorer", "version": "1"}, SOURCE_JSON, uri)
    body = json.loads(at.text_area[0].value)
    at.text_area[0].input(json.dumps({**body, "params": {"threshold": "abc"}}))
    predict(at, uri)
    message = at.error[0].value
    assert "Param 'threshold' expects a double; got 'abc'" in message
    assert "The model accepts: threshold (double, default 0.5)" in message
    assert at.text_area[0].value == json.dumps({**body, "params": {"threshold": "abc"}})

    at.text_area[0].input(json.dumps({**body, "params": {"threshhold": 0.9}}))
    predict(at, uri)
    assert not at.error, [e.value for e in at.error]
    assert any("Unknown param 'threshhold'" in w.value for w in at.warning)
    assert len(results_table(at, "label"))


def test_tensor_model_predicts_its_example_and_has_no_form(seeded):
    uri = "models:/digits-tensor/1"
    at = open_predict({"model": "digits-tensor", "version": "1"})
    assert any("use the input example" in i.value for i in at.info)
    predict(at, uri)
    assert not at.error, [e.value for e in at.error]
    table = results_table(at)
    assert list(table.columns) == ["prediction"] and len(table) == 3
    assert "inputs" in json.loads(at.code[1].value)


def test_model_without_signature_or_example_starts_on_json(seeded):
    at = open_predict({"model": "wine-no-signature", "version": "1"})
    assert any("no signature" in i.value for i in at.info)
    assert any("No input example" in i.value for i in at.info)
    assert "input_data" in at.text_area[0].value


def test_unknown_model_is_an_error_message(seeded):
    at = open_predict({"model": "no-such-model", "version": "1"})
    assert "does not exist" in at.error[0].value


def test_inspect_links_to_predict_with_the_same_address(seeded):
    at = AppTest.from_file(APP, default_timeout=90)
    at.switch_page("views/inspect.py")
    at.query_params["model"] = "iris-classifier"
    at.query_params["alias"] = "champion"
    at.run()
    link = next(
        e for e in at.main if e.type == "page_link" and e.proto.label == "Preview predictions"
    )
    assert link.proto.query_string == "model=iris-classifier&alias=champion"


# ----------------------------------------------------------------------------- charts


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (pd.DataFrame({"prediction": ["setosa", "virginica", "setosa"]}), ChartKind.CLASS_COUNTS),
        (pd.DataFrame({"prediction": [0, 3, 3, 9]}), ChartKind.CLASS_COUNTS),
        (pd.DataFrame({"prediction": [True, False]}), ChartKind.CLASS_COUNTS),
        (pd.DataFrame({"prediction": [151.2, 80.5, 210.0]}), ChartKind.HISTOGRAM),
        (pd.DataFrame({"prediction": np.arange(100)}), ChartKind.HISTOGRAM),
        (
            pd.DataFrame({"prediction_0": [0.2, 0.9], "prediction_1": [0.8, 0.1]}),
            ChartKind.PROBABILITIES,
        ),
        (
            pd.DataFrame({"setosa": [0.1, 0.0], "versicolor": [0.2, 0.5], "virginica": [0.3, 0.9]}),
            ChartKind.PROBABILITIES,
        ),
        # Probability and label (the cancer scorer): one numeric column is no class table.
        (pd.DataFrame({"probability": [0.2, 0.9], "label": ["b", "m"]}), ChartKind.CLASS_COUNTS),
        # Several numbers that are not probabilities: the first column's distribution.
        (pd.DataFrame({"low": [-1.0, 2.0], "high": [3.0, 40.0]}), ChartKind.HISTOGRAM),
    ],
)
def test_chart_kind_follows_the_output(output, expected):
    kind, _ = chart_kind(output)
    assert kind is expected
    assert prediction_figure(output) is not None


def test_chart_draws_the_label_column_and_counts_classes():
    output = pd.DataFrame({"probability": [0.2, 0.9, 0.7], "label": ["b", "m", "m"]})
    assert chart_kind(output) == (ChartKind.CLASS_COUNTS, ["label"])
    figure = prediction_figure(output)
    assert figure.data[0].type == "bar"
    assert dict(zip(figure.data[0].x, figure.data[0].y, strict=True)) == {"b": 1, "m": 2}


def test_histogram_and_probability_figures():
    histogram = prediction_figure(pd.DataFrame({"prediction": [1.5, 2.5, 3.5]}))
    assert histogram.data[0].type == "histogram"
    probabilities = prediction_figure(pd.DataFrame({"a": [0.3, 0.6], "b": [0.7, 0.4]}))
    assert {trace.name for trace in probabilities.data} == {"a", "b"}
    assert probabilities.layout.barmode == "stack"


@pytest.mark.parametrize(
    "output",
    [
        pd.DataFrame({"prediction": []}),
        pd.DataFrame({"prediction": [np.zeros(3), np.ones(3)]}),
        pd.DataFrame({"prediction": [{"a": 1}, {"b": 2}]}),
    ],
)
def test_no_chart_when_none_fits(output):
    assert chart_kind(output) is None and prediction_figure(output) is None


def test_results_join_inputs_and_predictions_side_by_side():
    inputs = pd.DataFrame({"x": [1.0, 2.0], "prediction": [0, 1]}, index=[10, 11])
    output = pd.DataFrame({"prediction": ["a", "b"]})
    table = results_frame(ModelInput(inputs), output)
    assert list(table.columns) == ["x", "prediction", "prediction (predicted)"]
    assert table["prediction (predicted)"].tolist() == ["a", "b"]
    tensor = results_frame(ModelInput(np.zeros((2, 8, 8))), pd.DataFrame({"prediction": [1, 2]}))
    assert list(tensor.columns) == ["prediction"]


# ----------------------------------------------------------------------------- snippets


def test_snippets_bodies_read_back_as_the_same_input():
    rows = pd.DataFrame({"a": [1.5, 2.0], "b": ["x", "it's"]})
    snippets = request_snippets(ModelInput(rows, {"threshold": 0.7}))
    for body in (snippets.azure_body, snippets.mlflow_body):
        parsed = parse_payload(body)
        pd.testing.assert_frame_equal(parsed.data, rows, check_dtype=False)
        assert parsed.params == {"threshold": 0.7}
    assert snippets.mlflow_format is PayloadFormat.DATAFRAME_SPLIT
    assert snippets.inline
    assert LOCAL_SCORING_URL in snippets.local_curl and AZURE_SCORING_URL in snippets.azure_curl
    assert "azureml-model-deployment: <deployment>" in snippets.azure_curl
    assert "azureml-model-deployment" not in snippets.local_curl
    assert "it'\"'\"'s" in snippets.local_curl  # shell-quoted, ready to paste


def test_python_snippets_are_valid_python_that_send_the_body(monkeypatch):
    sent = {}

    class Response:
        def raise_for_status(self):
            pass

        def json(self):
            return [1]

    def post(url, headers, timeout, json=None, data=None):
        sent.update(url=url, headers=headers, json=json, data=data)
        return Response()

    monkeypatch.setattr("requests.post", post)
    model_input = ModelInput(pd.DataFrame({"a": [1.0], "flag": [True], "b": [None]}))
    snippets = request_snippets(model_input)
    exec(compile(snippets.azure_python, "snippet", "exec"), {"print": lambda *_: None})
    assert sent["url"] == AZURE_SCORING_URL
    assert sent["headers"]["azureml-model-deployment"] == "<deployment>"
    assert sent["json"] == json.loads(snippets.azure_body)


def test_tensor_snippets_use_inputs_and_infinity_is_sent_as_text():
    snippets = request_snippets(ModelInput(np.array([[1.0, np.inf]])))
    assert snippets.mlflow_format is PayloadFormat.INPUTS
    assert "Infinity" in snippets.azure_body
    assert "data=body" in snippets.local_python
    compile(snippets.local_python, "snippet", "exec")


def test_long_bodies_are_read_from_a_file():
    snippets = request_snippets(ModelInput(np.zeros((100, 8, 8), dtype=np.float32)))
    assert not snippets.inline
    assert f"@{BODY_FILE}" in snippets.local_curl and BODY_FILE in snippets.azure_python
    compile(snippets.azure_python, "snippet", "exec")


def test_pretty_json_keeps_rows_on_one_line():
    text = pretty_json('{"input_data": {"columns": ["a", "b"], "data": [[1, 2], [3, 4]]}}')
    assert '"columns": ["a", "b"]' in text and "[1, 2]," in text
    assert json.loads(text) == {"input_data": {"columns": ["a", "b"], "data": [[1, 2], [3, 4]]}}


# ----------------------------------------------------------------------------- helpers


def test_environment_problems_keep_package_and_python_checks_that_did_not_pass():
    checks = [
        Check("Package numpy", CheckStatus.WARN, "differs"),
        Check("Package pandas", CheckStatus.PASS, "same"),
        Check("Saved with scikit-learn", CheckStatus.WARN, "older"),
        Check("Python version", CheckStatus.WARN, "3.12"),
        Check("MLflow version", CheckStatus.FAIL, "2.x"),
        Check("Signature", CheckStatus.WARN, "none"),
    ]
    assert [c.name for c in environment_problems(checks)] == [
        "Package numpy",
        "Saved with scikit-learn",
        "Python version",
        "MLflow version",
    ]


def test_form_starts_from_the_example_or_one_typed_empty_row():
    fields = [
        SchemaField("x", "double", True),
        SchemaField("n", "long", True),
        SchemaField("flag", "boolean", True),
        SchemaField("name", "string", False),
    ]
    empty = form_frame(fields, None)
    assert empty.iloc[0].tolist() == [0.0, 0, False, ""]
    example = pd.DataFrame({"n": [4], "x": [1.5], "flag": [True], "name": ["a"], "extra": [0]})
    assert list(form_frame(fields, example).columns) == ["x", "n", "flag", "name"]
    signature = SignatureInfo("columns", fields, None, [], [])
    template = json.loads(default_request_text(signature, None, None))
    assert template["input_data"]["columns"] == ["x", "n", "flag", "name"]


def test_seconds_are_shown_in_a_readable_unit():
    assert format_seconds(0.0123) == "12.3 ms"
    assert format_seconds(2.5) == "2.50 s"
