import io
import json

import hypothesis.extra.numpy as hnp
import mlflow
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlflow.models import Model, infer_signature
from mlflow.types import ColSpec, Schema
from pandas._libs.parsers import STR_NA_VALUES

from deploystudio.errors import DeployStudioError, PayloadError
from deploystudio.mlflow_scope import using_registry
from deploystudio.payload_formats import ModelInput, PayloadFormat, formats_for, write_payload
from deploystudio.payloads import detect_format, parse_payload

pytestmark = pytest.mark.filterwarnings(
    "ignore:Hint. Inferred schema contains integer column:UserWarning"
)

F = PayloadFormat
TABULAR = [F.AZURE_INPUT_DATA, F.DATAFRAME_SPLIT, F.DATAFRAME_RECORDS, F.CSV, F.PARQUET]
TENSOR = [F.AZURE_INPUT_DATA, F.INSTANCES, F.INPUTS, F.NPY, F.JSON_ARRAY]
IRIS_COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
EXAMPLES = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def csv_safe(text: str) -> bool:
    # Legitimately lossy in CSV: an empty field and pandas' NA spellings ("NA", "null", "nan",
    # ...) are read back as missing values. Excluded from the CSV strategy, nothing else is.
    return text != "" and text not in STR_NA_VALUES


# No lone surrogates: they cannot be encoded as UTF-8 in any format.
ANY_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
CSV_TEXT = ANY_TEXT.filter(csv_safe)
NAMES = st.lists(
    st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True), min_size=1, max_size=6, unique=True
)


@st.composite
def frames(draw, text=ANY_TEXT):
    rows = draw(st.integers(0, 20))
    columns = {}
    for name in draw(NAMES):
        kind = draw(st.sampled_from(["int64", "float64", "bool", "str"]))
        values = {
            "int64": st.integers(-(2**63), 2**63 - 1),
            "float64": st.floats(allow_nan=False, allow_infinity=False),
            "bool": st.booleans(),
            "str": text,
        }[kind]
        drawn = draw(st.lists(values, min_size=rows, max_size=rows))
        columns[name] = pd.Series(drawn, dtype=kind)
    return pd.DataFrame(columns)


def tensors():
    dtypes = st.sampled_from([np.dtype("float32"), np.dtype("float64"), np.dtype("int64")])
    return dtypes.flatmap(
        lambda dtype: hnp.arrays(
            dtype,
            hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5),
            elements=hnp.from_dtype(dtype, allow_nan=False, allow_infinity=False),
        )
    )


def written_and_parsed(model_input, payload_format, schema):
    body = write_payload(model_input, payload_format)
    assert isinstance(body, bytes) is payload_format.is_binary
    assert detect_format(body) is payload_format
    return parse_payload(body, schema)


@pytest.fixture(scope="module")
def demo_signatures(settings, seeded):
    with using_registry(settings.tracking_uri, settings.registry_uri):
        return {
            name: Model.load(f"models:/{name}/1").signature
            for name in ("iris-classifier", "cancer-risk-scorer", "digits-tensor")
        }


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("payload_format", TABULAR, ids=lambda f: f.value)
@EXAMPLES
@given(data=st.data())
def test_tables_survive_every_tabular_format(payload_format, data):
    strategy = frames(text=CSV_TEXT if payload_format is F.CSV else ANY_TEXT)
    if payload_format is F.DATAFRAME_RECORDS:
        # Records name the columns inside each row: a table without rows has no columns there.
        strategy = strategy.filter(len)
    frame = data.draw(strategy)
    schema = infer_signature(frame).inputs

    parsed = written_and_parsed(ModelInput(frame), payload_format, schema)

    pd.testing.assert_frame_equal(parsed.data, frame)
    assert parsed.params is None
    assert parsed.warnings == []


@pytest.mark.parametrize("payload_format", TENSOR, ids=lambda f: f.value)
@EXAMPLES
@given(array=tensors())
def test_arrays_survive_every_tensor_format(payload_format, array):
    schema = infer_signature(array).inputs

    parsed = written_and_parsed(ModelInput(array), payload_format, schema)

    assert parsed.data.dtype == array.dtype
    np.testing.assert_array_equal(parsed.data, array)


@pytest.mark.parametrize("payload_format", [F.AZURE_INPUT_DATA, F.INPUTS, F.INSTANCES])
def test_named_tensors_survive_their_formats(payload_format):
    tensors = {
        "image": np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7,
        "count": np.array([3, -(2**40)], dtype=np.int64),
    }
    schema = infer_signature(tensors).inputs

    parsed = written_and_parsed(ModelInput(tensors, {"k": 2}), payload_format, schema)

    assert parsed.data.keys() == tensors.keys()
    for name, array in tensors.items():
        assert parsed.data[name].dtype == array.dtype
        np.testing.assert_array_equal(parsed.data[name], array)
    assert parsed.params == {"k": 2}


def test_nan_is_written_as_json_null_and_read_back_as_nan():
    frame = pd.DataFrame({"x": [1.5, np.nan]})
    body = write_payload(ModelInput(frame), F.DATAFRAME_SPLIT)

    assert json.loads(body) == {"dataframe_split": {"columns": ["x"], "data": [[1.5], [None]]}}
    assert "NaN" not in body
    pd.testing.assert_frame_equal(parse_payload(body, infer_signature(frame).inputs).data, frame)


def test_azure_body_keeps_a_non_default_index_and_reads_it_back():
    frame = pd.DataFrame({"a": [1.0, 2.0]}, index=[10, 20])
    body = json.loads(write_payload(ModelInput(frame), F.AZURE_INPUT_DATA))

    assert body == {"input_data": {"columns": ["a"], "data": [[1.0], [2.0]], "index": [10, 20]}}
    pd.testing.assert_frame_equal(parse_payload(json.dumps(body)).data, frame)


# --------------------------------------------------------------------------- Azure ML


def test_azure_sample_request_parses_to_the_fixture_models_columns(azure_diabetes_model):
    schema = Model.load(str(azure_diabetes_model / "MLmodel")).signature.inputs
    body = (azure_diabetes_model.parent / "sample-request.json").read_bytes()

    assert detect_format(body) is F.AZURE_INPUT_DATA
    parsed = parse_payload(body, schema)

    assert isinstance(parsed.data, pd.DataFrame)
    assert parsed.data.shape == (1, 10)
    assert list(parsed.data.columns) == schema.input_names()
    assert (parsed.data.dtypes == "float64").all()
    assert parsed.data.iloc[0].tolist() == [float(i) for i in range(1, 11)]
    assert parsed.params is None


def test_azure_list_is_one_tensor_and_object_is_named_tensors(demo_signatures):
    images = np.zeros((2, 8, 8)).tolist()
    one = parse_payload(json.dumps({"input_data": images}), demo_signatures["digits-tensor"].inputs)
    assert one.data.shape == (2, 8, 8)
    assert one.data.dtype == np.float32

    named = parse_payload('{"input_data": {"a": [[1, 2]], "b": [0.5]}}')
    assert named.kind == "tensors"
    assert named.data["a"].tolist() == [[1, 2]]
    assert named.data["b"].tolist() == [0.5]


def test_azure_input_data_of_the_wrong_shape_says_what_it_accepts():
    with pytest.raises(PayloadError, match=r"'input_data' must be a table .*but it is a number"):
        parse_payload('{"input_data": 3}')


# --------------------------------------------------------------------------- params


def test_params_are_carried_through_mlflow_and_azure_bodies(demo_signatures):
    signature = demo_signatures["cancer-risk-scorer"]
    columns = signature.inputs.input_names()
    table = {"columns": columns, "data": [[14.0, 20.0, 0.1, 700.0, 0.2]]}

    mlflow_body = parse_payload(
        json.dumps({"dataframe_split": table, "params": {"threshold": 0.7}}), signature
    )
    azure_body = parse_payload(
        json.dumps({"input_data": table, "params": {"threshold": 0.2}}), signature.inputs
    )

    assert mlflow_body.params == {"threshold": 0.7}
    assert azure_body.params == {"threshold": 0.2}
    pd.testing.assert_frame_equal(mlflow_body.data, azure_body.data)
    for body in (mlflow_body, azure_body):
        rewritten = write_payload(body, F.DATAFRAME_SPLIT)
        assert json.loads(rewritten)["params"] == body.params


def test_params_reach_the_real_model(settings, demo_signatures):
    signature = demo_signatures["cancer-risk-scorer"]
    table = {"columns": signature.inputs.input_names(), "data": [[14.0, 20.0, 0.1, 700.0, 0.2]]}
    with using_registry(settings.tracking_uri, settings.registry_uri):
        model = mlflow.pyfunc.load_model("models:/cancer-risk-scorer/1")
    labels = {}
    for threshold in (0.0, 1.01):
        parsed = parse_payload(
            json.dumps({"input_data": table, "params": {"threshold": threshold}}), signature
        )
        labels[threshold] = model.predict(parsed.data, params=parsed.params)["label"].tolist()
    assert labels[0.0] != labels[1.01]


def test_files_and_bare_arrays_cannot_carry_params():
    assert [f for f in F if f.carries_params] == [
        F.AZURE_INPUT_DATA,
        F.DATAFRAME_SPLIT,
        F.DATAFRAME_RECORDS,
        F.INSTANCES,
        F.INPUTS,
    ]
    array = ModelInput(np.ones((1, 2)), {"k": 1})
    assert json.loads(write_payload(array, F.JSON_ARRAY)) == [[1.0, 1.0]]
    assert json.loads(write_payload(array, F.INSTANCES))["params"] == {"k": 1}


CANCER_PARAMS_TEXT = "The model accepts: threshold (double, default 0.5)."


def cancer_body(signature, params) -> str:
    table = {"columns": signature.inputs.input_names(), "data": [[14.0, 20.0, 0.1, 700.0, 0.2]]}
    return json.dumps({"input_data": table, "params": params})


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"threshold": "abc"}, "Param 'threshold' expects a double; got 'abc'."),
        ({"threshold": [0.1, 0.2]}, "Param 'threshold' expects a double; got [0.1, 0.2] (a list)."),
        ({"threshold": True}, "Param 'threshold' expects a double; got True."),
    ],
)
def test_an_invalid_param_is_named_with_what_the_model_accepts(demo_signatures, params, message):
    with pytest.raises(PayloadError) as caught:
        parse_payload(
            cancer_body(demo_signatures["cancer-risk-scorer"], params),
            demo_signatures["cancer-risk-scorer"],
        )
    assert str(caught.value) == f"{message} {CANCER_PARAMS_TEXT}"


def test_an_unknown_param_is_a_warning_because_mlflow_ignores_it(demo_signatures):
    signature = demo_signatures["cancer-risk-scorer"]
    parsed = parse_payload(cancer_body(signature, {"threshold": 1, "foo": 2}), signature)
    assert parsed.params == {"threshold": 1, "foo": 2}  # sent as given; MLflow drops 'foo'
    assert parsed.warnings == [
        "Unknown param 'foo'; the model accepts: threshold (double, default 0.5). MLflow ignores "
        "params the signature does not declare, so it has no effect: check its spelling."
    ]


def test_params_for_a_model_without_params_are_a_warning(demo_signatures):
    body = {"inputs": np.zeros((1, 8, 8)).tolist(), "params": {"threshold": 0.3}}
    parsed = parse_payload(json.dumps(body), demo_signatures["digits-tensor"])
    assert parsed.warnings == [
        "The model's signature declares no params, so MLflow ignores 'threshold': it has no "
        "effect on the predictions."
    ]


def test_params_that_are_not_an_object_are_refused():
    with pytest.raises(PayloadError, match=r"'params' must be a JSON object .*but it is a list"):
        parse_payload('{"inputs": [1], "params": [0.7]}')


# --------------------------------------------------------------------------- detection


@pytest.mark.parametrize(
    ("body", "payload_format"),
    [
        ('{"input_data": {"columns": ["a"], "data": [[1]]}}', F.AZURE_INPUT_DATA),
        ('{"params": {"k": 1}, "dataframe_split": {"data": [[1]]}}', F.DATAFRAME_SPLIT),
        ('{"dataframe_records": [{"a": 1}]}', F.DATAFRAME_RECORDS),
        ('{"instances": [[1, 2]]}', F.INSTANCES),
        ('  \n{"inputs": [[1, 2]]}', F.INPUTS),
        ("[[1, 2], [3, 4]]", F.JSON_ARRAY),
        ("a,b\n1,2\n", F.CSV),
        (b"\xef\xbb\xbfa\n1\n", F.CSV),
        (pd.DataFrame({"a": [1]}).to_parquet(), F.PARQUET),
    ],
    ids=lambda v: v.value if isinstance(v, PayloadFormat) else "",
)
def test_format_is_detected_from_content(body, payload_format):
    assert detect_format(body) is payload_format


def test_npy_is_detected_by_its_magic_bytes():
    buffer = io.BytesIO()
    np.save(buffer, np.ones(3))
    assert buffer.getvalue().startswith(b"\x93NUMPY")
    assert detect_format(buffer.getvalue()) is F.NPY


@pytest.mark.parametrize(
    ("filename", "payload_format"),
    [("x.csv", F.CSV), ("X.PARQUET", F.PARQUET), ("x.pq", F.PARQUET), ("x.npy", F.NPY)],
)
def test_file_extension_comes_before_content(filename, payload_format):
    assert detect_format('{"inputs": [1]}', filename=filename) is payload_format


def test_json_file_extension_leaves_the_choice_to_the_content():
    assert detect_format('{"instances": [1]}', filename="req.json") is F.INSTANCES


def test_npz_archives_are_refused_with_what_to_do_instead():
    with pytest.raises(PayloadError, match=r"NPZ archive.*numpy\.save"):
        detect_format(b"PK\x03\x04", filename="arrays.npz")


def test_chosen_format_must_match_the_bodys_key():
    with pytest.raises(PayloadError, match="uses 'inputs', but MLflow dataframe_split was chosen"):
        parse_payload('{"inputs": [1]}', payload_format=F.DATAFRAME_SPLIT)


# --------------------------------------------------------------------------- bad input


def test_malformed_json_says_line_and_column():
    body = '{\n  "dataframe_split": {\n    "columns": ["a"] "data": [[1]]\n  }\n}'
    with pytest.raises(PayloadError, match=r"Expecting ',' delimiter at line 3, column 22"):
        parse_payload(body)


@pytest.mark.parametrize(
    ("body", "kind"), [("42", "a number"), ('"text"', "a string"), ("null", "null")]
)
def test_body_that_is_not_a_json_object_is_refused(body, kind):
    with pytest.raises(PayloadError, match=f"The body is {kind}, but it must be a JSON object"):
        parse_payload(body)


def test_json_array_given_to_an_object_format_is_refused():
    with pytest.raises(PayloadError, match="The body is a list, but it must be a JSON object"):
        parse_payload("[[1, 2]]", payload_format=F.INPUTS)


def test_unknown_top_level_key_is_named_with_the_accepted_keys():
    with pytest.raises(PayloadError) as caught:
        parse_payload('{"dataframe_split": {"data": [[1]]}, "param": {"threshold": 0.7}}')
    message = str(caught.value)
    assert "Unknown top-level key 'param'" in message
    for key in ("input_data", "dataframe_split", "dataframe_records", "instances", "inputs"):
        assert key in message
    assert "'params'" in message


def test_body_without_an_input_key_lists_the_keys():
    with pytest.raises(PayloadError, match=r"no input key. Add exactly one of input_data"):
        parse_payload('{"params": {"threshold": 0.7}}')


def test_two_input_keys_at_once_are_refused():
    with pytest.raises(PayloadError, match="2 input keys at once \\('instances', 'inputs'\\)"):
        parse_payload('{"instances": [[1]], "inputs": [[1]]}')


def test_missing_columns_are_named_with_the_expected_ones(demo_signatures):
    body = {"dataframe_split": {"columns": ["sepal_length", "sepal_width"], "data": [[1, 2]]}}
    with pytest.raises(PayloadError) as caught:
        parse_payload(json.dumps(body), demo_signatures["iris-classifier"].inputs)
    message = str(caught.value)
    assert "Missing required columns 'petal_length', 'petal_width'" in message
    assert "expects: " + ", ".join(IRIS_COLUMNS) in message


def test_wrong_value_type_names_the_column_the_expected_type_and_the_row(demo_signatures):
    rows = [[5.1, 3.5, 1.4, 0.2], [5.1, 3.5, "long", 0.2]]
    body = {"dataframe_records": [dict(zip(IRIS_COLUMNS, row, strict=True)) for row in rows]}
    with pytest.raises(PayloadError) as caught:
        parse_payload(json.dumps(body), demo_signatures["iris-classifier"].inputs)
    message = str(caught.value)
    assert message.startswith(
        "Column 'petal_length' expects double; row 2 (data rows counted from 1) has 'long'."
    )
    assert "Traceback" not in message and "MLflow Model scoring protocol" not in message


def test_wrong_value_type_in_a_csv_names_the_column_and_the_row(demo_signatures):
    csv = ",".join(IRIS_COLUMNS) + "\n5.1,3.5,1.4,0.2\n5.0,three,1.4,0.2\n"
    with pytest.raises(PayloadError, match=r"Column 'sepal_width' expects double; row 2 .*'three'"):
        parse_payload(csv, demo_signatures["iris-classifier"].inputs, filename="rows.csv")


MIXED_SCHEMA = Schema([ColSpec("double", "x"), ColSpec("long", "n"), ColSpec("boolean", "b")])


def table_body(payload_format: PayloadFormat, rows: list[list]) -> str | bytes:
    columns = ["x", "n", "b"]
    if payload_format is F.DATAFRAME_RECORDS:
        return json.dumps({"dataframe_records": [dict(zip(columns, r, strict=True)) for r in rows]})
    if payload_format is F.CSV:
        lines = [",".join(columns)] + [",".join(str(v).lower() for v in r) for r in rows]
        return "\n".join(lines) + "\n"
    if payload_format is F.PARQUET:
        frame = pd.DataFrame(rows, columns=columns)
        return frame.astype({c: str for c in columns if frame[c].dtype == object}).to_parquet()
    return json.dumps({payload_format.value: {"columns": columns, "data": rows}})


GOOD_ROWS = [[1.5, 1, True], [2.5, 2, False]]


@pytest.mark.parametrize("payload_format", TABULAR, ids=lambda f: f.value)
def test_a_value_that_does_not_convert_is_named_with_its_row_in_every_table_format(
    payload_format,
):
    rows = [*GOOD_ROWS, ["abc", 3, True], [4.5, 4, True]]
    with pytest.raises(PayloadError) as caught:
        parse_payload(table_body(payload_format, rows), MIXED_SCHEMA, payload_format)
    assert str(caught.value).startswith(
        "Column 'x' expects double; row 3 (data rows counted from 1) has 'abc'. Fix that value"
    )


@pytest.mark.parametrize(
    ("bad", "column", "shown"),
    [
        ([1.5, "many", True], "n", "'many'"),
        ([1.5, 1.5, True], "n", "1.5"),  # pandas' CSV reader refuses 1.5 as an integer
        ([1.5, 1, "maybe"], "b", "'maybe'"),
    ],
)
def test_a_csv_value_pandas_refuses_is_named_with_its_row(bad, column, shown):
    body = table_body(F.CSV, [*GOOD_ROWS, bad])
    with pytest.raises(PayloadError) as caught:
        parse_payload(body, MIXED_SCHEMA, filename="rows.csv")
    expected = {"n": "long", "b": "boolean"}[column]
    assert f"Column '{column}' expects {expected}; row 3 (data rows counted from 1) has " in str(
        caught.value
    )
    assert f"has {shown}." in str(caught.value)


def test_the_bad_row_is_found_far_down_a_large_payload():
    rows = [[float(i), i, True] for i in range(20_000)]
    rows[12_345][0] = "n/a?"
    for payload_format in (F.DATAFRAME_SPLIT, F.CSV):
        with pytest.raises(PayloadError, match=r"row 12346 \(data rows counted from 1\)"):
            parse_payload(table_body(payload_format, rows), MIXED_SCHEMA, payload_format)


@pytest.mark.parametrize(
    ("body", "filename"), [("", None), ("  \n ", None), (b"", "rows.csv"), (b"", "a.parquet")]
)
def test_empty_body_or_file_is_refused(body, filename):
    with pytest.raises(PayloadError, match="The payload is empty"):
        parse_payload(body, filename=filename)


def test_non_utf8_csv_says_the_byte_offset_and_line():
    latin1 = "name,city\nx,Zürich\n".encode("latin-1")
    with pytest.raises(PayloadError) as caught:
        parse_payload(latin1, filename="cities.csv")
    message = str(caught.value)
    assert "not UTF-8" in message
    assert "byte 0xfc at byte offset 13 (line 2)" in message
    assert "invalid start byte" in message


def test_ragged_csv_row_says_its_line():
    with pytest.raises(PayloadError, match=r"Line 3 of the CSV has 3 fields, but .* have 2"):
        parse_payload("a,b\n1,2\n3,4,5\n6,7\n", filename="rows.csv")


def test_body_over_the_limit_says_its_size_and_the_limit():
    body = json.dumps({"inputs": [0.5] * 2_000})
    with pytest.raises(PayloadError) as caught:
        parse_payload(body, max_bytes=1_000)
    assert f"The payload is {len(body):,} bytes, over the limit of 1,000 bytes" in str(caught.value)

    big = b"\x93NUMPY" + bytes(3 * 1024 * 1024)
    with pytest.raises(PayloadError, match=r"3\.0 MB \(3,145,734 bytes\), over the limit of 2\.0"):
        parse_payload(big, max_bytes=2 * 1024 * 1024)


def test_npy_of_python_objects_is_never_unpickled():
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(PayloadError, match=r"Python objects .*never does that"):
        parse_payload(buffer.getvalue())


def test_file_named_npy_without_npy_content_is_refused():
    with pytest.raises(PayloadError, match="not an NPY file"):
        parse_payload(b"garbage", filename="x.npy")


def test_truncated_parquet_is_refused_without_a_traceback():
    with pytest.raises(PayloadError, match="The Parquet file could not be read") as caught:
        parse_payload(pd.DataFrame({"a": [1]}).to_parquet()[:-12])
    assert "Traceback" not in str(caught.value)


def test_tensor_of_the_wrong_shape_says_both_shapes(demo_signatures):
    with pytest.raises(PayloadError) as caught:
        parse_payload(
            json.dumps({"inputs": np.zeros((2, 8)).tolist()}),
            demo_signatures["digits-tensor"].inputs,
        )
    assert "has shape (2, 8), but the model expects (-1, 8, 8)" in str(caught.value)


def test_npy_of_the_wrong_shape_is_refused_and_the_right_one_cast(demo_signatures):
    schema = demo_signatures["digits-tensor"].inputs
    wrong, right = io.BytesIO(), io.BytesIO()
    np.save(wrong, np.zeros((3, 64)))
    np.save(right, np.zeros((3, 8, 8)))
    with pytest.raises(PayloadError, match=r"\(3, 64\), but the model expects \(-1, 8, 8\)"):
        parse_payload(wrong.getvalue(), schema)
    assert parse_payload(right.getvalue(), schema).data.dtype == np.float32


def test_ragged_tensor_is_explained(demo_signatures):
    with pytest.raises(PayloadError, match="different lengths \\(a ragged array\\)"):
        parse_payload("[[1, 2], [3]]", demo_signatures["digits-tensor"].inputs)


def test_missing_named_tensor_is_named():
    schema = infer_signature({"a": np.ones((1, 2)), "b": np.ones(1)}).inputs
    with pytest.raises(PayloadError, match="Missing required named tensor 'b'"):
        parse_payload('{"inputs": {"a": [[1, 2]]}}', schema)


def test_payload_errors_are_deploy_studio_errors():
    assert issubclass(PayloadError, DeployStudioError)


# --------------------------------------------------------------------------- MLflow's coercions


def test_silent_coercions_by_mlflow_become_warnings():
    schema = infer_signature(pd.DataFrame({"n": [1], "flag": [True], "name": ["x"]})).inputs
    body = {"dataframe_split": {"columns": ["n", "flag", "name"], "data": [[1.7, "false", 3]]}}

    parsed = parse_payload(json.dumps(body), schema)

    # What MLflow's cast gives, which is what its server would pass to the model.
    assert parsed.data.iloc[0].tolist() == [1, True, 3]
    assert parsed.warnings == [
        "Column 'n' expects long values: 1.7 in row 1 (data rows counted from 1) became 1. Send "
        "long values to be sure what the model gets.",
        "Column 'flag' expects boolean values: 'false' in row 1 (data rows counted from 1) became "
        "True. Send boolean values to be sure what the model gets.",
        "Column 'name' expects strings, but row 1 (data rows counted from 1) holds 3 (int), which "
        "MLflow passes on unchanged: quote it.",
    ]


def test_whole_numbers_as_floats_are_not_a_coercion_worth_a_warning():
    schema = infer_signature(pd.DataFrame({"n": [1], "flag": [True]})).inputs
    parsed = parse_payload('{"dataframe_records": [{"n": 2.0, "flag": 1}]}', schema)
    assert parsed.data.iloc[0].tolist() == [2, True]
    assert parsed.warnings == []


def test_tensor_coercion_to_integers_is_a_warning():
    schema = infer_signature(np.array([[1, 2]], dtype=np.int64)).inputs
    parsed = parse_payload('{"inputs": [[1, 2.5]]}', schema)
    assert parsed.data.tolist() == [[1, 2]]
    assert parsed.warnings == [
        "In the tensor, 2.5 at (0, 1) became 2 (int64, as the model's signature says). Send "
        "int64 values to be sure what the model gets."
    ]


# --------------------------------------------------------------------------- formats_for


def test_formats_for_each_kind_of_input():
    assert formats_for(ModelInput(pd.DataFrame({"a": [1]}))) == TABULAR
    # Without rows, records cannot name the columns; Parquet needs string column names.
    assert formats_for(ModelInput(pd.DataFrame({0: []}))) == [
        F.AZURE_INPUT_DATA,
        F.DATAFRAME_SPLIT,
        F.CSV,
    ]
    assert formats_for(ModelInput(np.ones((2, 2)))) == [
        F.AZURE_INPUT_DATA,
        F.INSTANCES,
        F.INPUTS,
        F.NPY,
        F.JSON_ARRAY,
    ]
    assert formats_for(ModelInput({"a": np.ones(2), "b": np.ones((2, 3))})) == [
        F.AZURE_INPUT_DATA,
        F.INSTANCES,
        F.INPUTS,
    ]
    # Rows of different lengths cannot be instances.
    assert formats_for(ModelInput({"a": np.ones(2), "b": np.ones(3)})) == [
        F.AZURE_INPUT_DATA,
        F.INPUTS,
    ]


def test_writing_a_format_that_does_not_fit_says_which_ones_do():
    with pytest.raises(PayloadError, match=r"cannot be written as NPY file. It can be written as"):
        write_payload(ModelInput(pd.DataFrame({"a": [1]})), F.NPY)


INTEGER_SCHEMA_COLUMNS = [("long", "count"), ("double", "x")]


@pytest.mark.parametrize(
    ("body", "row"),
    [
        ('{"dataframe_split": {"columns": ["count", "x"], "data": [[1, 1.0], [null, 2.0]]}}', 2),
        ('{"input_data": {"columns": ["count", "x"], "data": [[1, 1.0], [3, 2.0], [NaN, 2]]}}', 3),
        ('{"dataframe_records": [{"count": null, "x": 1.0}]}', 1),
        ("count,x\n1,1.0\n2,2.0\n3,3.0\n,4.0\n", 4),
    ],
)
def test_missing_value_in_an_integer_column_names_the_column_and_row(body, row):
    schema = Schema([ColSpec(kind, name) for kind, name in INTEGER_SCHEMA_COLUMNS])
    with pytest.raises(PayloadError) as error:
        parse_payload(body, schema)
    message = str(error.value)
    assert "Column 'count'" in message and f"row {row} (data rows counted from 1) is" in message
    assert "Int64" not in message  # pandas' advice is for pandas users, not for API callers


def test_text_in_an_integer_column_is_a_wrong_value_not_a_missing_one():
    schema = Schema([ColSpec(kind, name) for kind, name in INTEGER_SCHEMA_COLUMNS])
    body = '{"dataframe_split": {"columns": ["count", "x"], "data": [[1, 1.0], ["many", 2.0]]}}'
    with pytest.raises(PayloadError) as error:
        parse_payload(body, schema)
    assert "Column 'count'" in str(error.value) and "cannot be empty" not in str(error.value)


def test_missing_value_in_an_integer_parquet_column_names_the_row():
    schema = Schema([ColSpec(kind, name) for kind, name in INTEGER_SCHEMA_COLUMNS])
    frame = pd.DataFrame({"count": [1.0, None], "x": [1.0, 2.0]})
    body = frame.to_parquet()
    with pytest.raises(PayloadError, match=r"row 2 \(data rows counted from 1\) is"):
        parse_payload(body, schema, filename="rows.parquet")


def test_mlflow_1_split_layout_of_input_example_json_is_a_dataframe_split():
    """MLflow 1.x saved input_example.json as a bare {"columns", "data"} table."""
    schema = Schema([ColSpec("double", name) for name in IRIS_COLUMNS])
    body = json.dumps({"columns": IRIS_COLUMNS, "data": [[5.1, 3.5, 1.4, 0.2]], "index": [0]})
    assert detect_format(body) is F.DATAFRAME_SPLIT
    parsed = parse_payload(body, schema, filename="input_example.json")
    assert list(parsed.data.columns) == IRIS_COLUMNS and parsed.data.iloc[0, 0] == 5.1
    with pytest.raises(PayloadError, match="Unknown top-level key 'columns', 'rows'"):
        parse_payload(json.dumps({"columns": IRIS_COLUMNS, "rows": [[1, 2, 3, 4]]}), schema)
