"""Generated form values typed into the pages through AppTest: the Predict page's signature form
(typed fields, params, the multi-row editor) and JSON editor, the Deploy page's names and
instance count, the Endpoints page's traffic and delete confirmation, the Batch page's folder
path and settings.

Every example ends with no traceback on the page, and either a result or an error/warning that
says what went wrong in words (no raw Python repr); what the user typed stays in its widget.
No server starts: the Deploy, Endpoints and Batch cases are values refused before anything
runs, or stop at the page's own checks.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import mlflow
import pandas as pd
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema
from streamlit.testing.v1 import AppTest

from components import services
from components.payload_editor import SOURCE_FORM, SOURCE_JSON, editor_key, source_key
from components.payload_form import FORM_ROWS
from components.payload_json import AUTO_FORMAT, JSON_FORMATS
from components.traffic_editor import editor_key as traffic_key
from deploystudio.deployment.local.servers import MAX_INSTANCES
from tests.conftest import REPO_ROOT
from tests.page_support import (  # noqa: F401 (fixtures)
    fresh_caches,
    pages_using,
    prediction_worker_stopped_at_the_end,
)
from tests.reliability.conftest import examples
from tests.reliability.figures import FIGURES
from tests.reliability.strategies import dumps, json_values, shaped_bodies, tricky_texts

SUITE = "form values"
APP = str(REPO_ROOT / "app.py")
RUN_TIMEOUT = 120
# What a page must never show as its message: a traceback or an exception's repr.
RAW_PYTHON = re.compile(r"Traceback|File \"|\b[A-Z]\w*(?:Error|Exception)\(|object at 0x")

# The mixed model: one column of each widget kind, and one param of each (a list among them).
COLUMNS = {
    "x": "double",
    "f": "float",
    "n": "long",
    "i": "integer",
    "flag": "boolean",
    "name": "string",
    "note": "string",  # optional
}
SCALAR_PARAMS = {"threshold": "double", "label": "string", "k": "long", "strict": "boolean"}
LIST_PARAM = "weights"
CANCER_URI = "models:/cancer-risk-scorer/1"
CANCER_FEATURES = (
    "mean_radius",
    "mean_texture",
    "mean_smoothness",
    "worst_area",
    "worst_concavity",
)
IRIS_URI = "models:/iris-classifier/1"

# -- generated values -----------------------------------------------------------------------

HUGE_FLOATS = (1e308, -1e308, 5e-324, -5e-324, 3.4028235e38, 3.5e38, 1e-46, 2.0**53 + 1)
# A browser's whole-number input sends JavaScript numbers: integers up to 2**53 exactly.
SAFE_INT = 2**53 - 1
EDGE_INTS = (0, -1, 2**31 - 1, 2**31, -(2**31) - 1, 2**32, SAFE_INT, -SAFE_INT)
TRICKY_TEXTS = (
    "",
    " ",
    "\t",
    "\x00",
    "\x1b[31mred",
    "\u202eevil",
    "é",
    "😀",
    "NaN",
    "-1e999",
    "null",
    "true",
    "0x1F",
    "1,5",
    "[1, 2]",
    '{"a": 1}',
    "../../etc/passwd",
    "'; DROP TABLE x; --",
    "<script>alert(1)</script>",
    "x" * 100_000,
    "\r\n" * 50,
)
floats_typed = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(HUGE_FLOATS)
ints_typed = st.integers(-SAFE_INT, SAFE_INT) | st.sampled_from(EDGE_INTS)
# st.text leaves out lone surrogates, which a browser cannot send either.
texts_typed = st.text(max_size=60) | st.sampled_from(TRICKY_TEXTS)
list_param_texts = st.one_of(
    st.lists(floats_typed, max_size=4).map(dumps),
    st.lists(st.floats(-1e6, 1e6), max_size=4).map(dumps),
    json_values.map(dumps),
    st.sampled_from(["", "[", "[1,", "[]", '["a", null]', "[[1], [2, 3]]", "1", '"x"', "{}"]),
    st.text(max_size=20),
)


def typed_values(type_name: str) -> st.SearchStrategy:
    return {
        "double": floats_typed,
        "float": floats_typed,
        "long": ints_typed,
        "integer": ints_typed,
        "boolean": st.booleans(),
    }.get(type_name, texts_typed)


def kept(shown: object, typed: object, low: float = -math.inf, high: float = math.inf) -> bool:
    """Whether a widget still shows what was typed. Streamlit's number input puts its default
    back for NaN, infinity and values past its bounds (NumberInputSerde): those never reach
    the page, and a finite value in bounds is shown instead."""
    if isinstance(typed, bool | str):
        return shown == typed
    if not (math.isfinite(typed) and low <= typed <= high):
        return isinstance(shown, int | float) and math.isfinite(shown) and low <= shown <= high
    return shown == typed


# -- what every example checks --------------------------------------------------------------


def tried(at: AppTest, case: str) -> list[str]:
    """Count one case; a traceback on the page is a crash (counted, then failed, so that
    hypothesis shrinks it). Return the page's error messages after checking every error and
    warning is words, not Python."""
    FIGURES.add(SUITE, "cases tried")
    if at.exception:
        FIGURES.add(SUITE, "crashes")
        pytest.fail(f"{case}: the page raised {[e.value for e in at.exception]}")
    errors = [e.value for e in at.error]
    for message in errors + [w.value for w in at.warning]:
        assert message.strip(), f"{case}: an empty message"
        assert not RAW_PYTHON.search(message), f"{case}: raw Python shown: {message[:500]}"
    return errors


def names_one_of(errors: list[str], names: list[str] | tuple[str, ...]) -> bool:
    """Whether an error names one of `names`: quoted, or bare when the name is too long to
    turn up in any sentence by chance ("n" would)."""
    return any(
        f"'{name}'" in error or (len(name) > 3 and name in error)
        for error in errors
        for name in names
    )


def prediction_rows(at: AppTest, column: str = "prediction") -> int | None:
    """Rows of the result table, None when no result is shown."""
    tables = [d.value for d in at.dataframe if column in d.value.columns]
    return len(tables[0]) if tables else None


# -- the pages and their data ---------------------------------------------------------------


class Echo(PythonModel):
    """Answers one number per row: the form's values only have to arrive."""

    def predict(self, context, model_input, params=None):
        return pd.DataFrame({"prediction": list(range(len(model_input)))})


@pytest.fixture(scope="module")
def models_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("form-models")
    signature = ModelSignature(
        inputs=Schema([ColSpec(t, n, required=n != "note") for n, t in COLUMNS.items()]),
        outputs=Schema([ColSpec("long", "prediction")]),
        params=ParamSchema(
            [
                ParamSpec("threshold", "double", 0.5),
                ParamSpec("label", "string", "a"),
                ParamSpec("k", "long", 3),
                ParamSpec("strict", "boolean", False),
                ParamSpec(LIST_PARAM, "double", [1.0, 2.0], shape=(-1,)),
            ]
        ),
    )
    # By value, as the demo models are: the worker process does not import the tests.
    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    try:
        mlflow.pyfunc.save_model(
            str(root / "mixed"), python_model=Echo(), signature=signature, pip_requirements=[]
        )
    finally:
        cloudpickle.unregister_pickle_by_value(module)
    return root


@pytest.fixture(scope="module")
def home(tmp_path_factory, settings, seeded, models_root) -> Iterator[Path]:
    """A data folder of this module's own over the session's registry; the mixed model's folder
    is an allowed model root; the batch input root holds folders but no file, so no job can
    start (a job scores every file of its folder, tables or not, as Azure does)."""
    home = tmp_path_factory.mktemp("form-fuzz")
    (home / "batch-inputs" / "sub").mkdir(parents=True)
    with pages_using(home, settings), pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEPLOYSTUDIO_MODEL_ROOTS", str(models_root))
        try:
            yield home
        finally:
            local = services.local_endpoints()
            local.operations.shutdown()
            local.target.stop_all()
            services._local_endpoints.clear()


def open_page(page: str, query: dict[str, str], state: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=RUN_TIMEOUT)
    at.switch_page(page)
    for name, value in query.items():
        at.query_params[name] = value
    for name, value in (state or {}).items():
        at.session_state[name] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def open_predict(query: dict[str, str], uri: str, source: str) -> AppTest:
    return open_page("views/predict.py", query, {source_key(uri): source})


def click_predict(at: AppTest, uri: str) -> None:
    at.button(key=f"{editor_key(uri)}_predict").click().run()


# -- Predict: the signature form ------------------------------------------------------------


def test_typed_fields_and_params_predict_or_name_the_field(home, models_root):
    FIGURES.measured(SUITE, "cases tried", "crashes")
    uri = str(models_root / "mixed")
    at = open_predict({"uri": uri}, uri, SOURCE_FORM)
    key = editor_key(uri)
    names = [*COLUMNS, *SCALAR_PARAMS, LIST_PARAM]

    def widget(kind: str, name: str):
        prefix = "field" if kind == "column" else "form_param"
        found = [
            w
            for w in (*at.number_input, *at.text_input, *at.checkbox)
            if w.key == f"{key}_{prefix}_{name}"
        ]
        assert found, f"no widget for {kind} {name}"
        return found[0]

    @examples(default=40, long=120)
    @given(
        columns=st.fixed_dictionaries({n: typed_values(t) for n, t in COLUMNS.items()}),
        params=st.fixed_dictionaries({n: typed_values(t) for n, t in SCALAR_PARAMS.items()}),
        weights=list_param_texts,
    )
    def case(columns: dict, params: dict, weights: str) -> None:
        typed = {("column", n): v for n, v in columns.items()}
        typed |= {("param", n): v for n, v in params.items()} | {("param", LIST_PARAM): weights}
        for (kind, name), value in typed.items():
            widget(kind, name).set_value(value)
        click_predict(at, uri)
        errors = tried(at, f"form {typed}")
        rows = prediction_rows(at)
        event("result" if rows is not None else "refused")
        if rows is None:
            assert errors, "neither a result nor an error"
            assert names_one_of(errors, names), errors
        else:
            assert rows == 1
        for (kind, name), value in typed.items():
            assert kept(widget(kind, name).value, value), (name, value)
        try:
            value = json.loads(weights)
        except json.JSONDecodeError:
            value = None
        valid_list = isinstance(value, list) and not any(isinstance(v, list | dict) for v in value)
        if not valid_list:  # refused by name, never replaced by the default
            assert rows is None and names_one_of(errors, [LIST_PARAM]), errors

    case()


def test_threshold_param_and_features_of_the_cancer_scorer(home):
    FIGURES.measured(SUITE, "cases tried", "crashes")
    at = open_predict({"model": "cancer-risk-scorer", "version": "1"}, CANCER_URI, SOURCE_FORM)
    key = editor_key(CANCER_URI)

    @examples(default=15, long=60)
    @given(
        threshold=floats_typed,
        features=st.lists(floats_typed, min_size=len(CANCER_FEATURES), max_size=5),
    )
    def case(threshold: float, features: list[float]) -> None:
        at.number_input(key=f"{key}_form_param_threshold").set_value(threshold)
        for name, value in zip(CANCER_FEATURES, features, strict=True):
            at.number_input(key=f"{key}_field_{name}").set_value(value)
        click_predict(at, CANCER_URI)
        errors = tried(at, f"threshold {threshold}, features {features}")
        rows = prediction_rows(at, "label")
        event("result" if rows is not None else "refused")
        if rows is None:
            assert errors, "neither a result nor an error"
            # A value the model's own code refuses (its scaler overflows on 1e307) is passed on
            # as the model said it: the model named no field.
            by_model = errors[0].startswith("The model raised")
            assert by_model or names_one_of(errors, ["threshold", *CANCER_FEATURES]), errors
        assert kept(at.number_input(key=f"{key}_form_param_threshold").value, threshold)

    case()


def editor_values(type_name: str) -> st.SearchStrategy:
    """What the browser's table editor sends for a column: JSON values of its kind, or null."""
    kind = {
        "double": st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(HUGE_FLOATS),
        "float": st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(HUGE_FLOATS),
        "long": ints_typed,
        "integer": ints_typed,
        "boolean": st.booleans(),
    }.get(type_name, texts_typed.filter(lambda t: len(t) < 1000))
    return st.none() | kind


# One row of the editor's edits: some of the columns, each with a value of its kind or null.
rows_of_edits = st.sets(st.sampled_from(list(COLUMNS))).flatmap(
    lambda names: st.fixed_dictionaries({n: editor_values(COLUMNS[n]) for n in sorted(names)})
)


def test_several_rows_editor_predicts_each_row_or_names_the_column(home, models_root):
    FIGURES.measured(SUITE, "cases tried", "crashes")
    uri = str(models_root / "mixed")
    at = open_predict({"uri": uri}, uri, SOURCE_FORM)
    key = editor_key(uri)
    at.radio(key=f"{key}_form_mode").set_value(FORM_ROWS).run()
    assert not at.exception, [e.value for e in at.exception]

    @examples(default=20, long=60)
    @given(
        edited=rows_of_edits,
        added=st.lists(rows_of_edits, max_size=3),
        delete_first=st.booleans(),
    )
    def case(edited: dict, added: list[dict], delete_first: bool) -> None:
        # The editor's own state format (st.data_editor): edits by row position, new rows, and
        # deleted row positions; the form starts with one row.
        state = {
            "edited_rows": {0: edited} if edited else {},
            "added_rows": added,
            "deleted_rows": [0] if delete_first else [],
        }
        at.session_state[f"{key}_form_rows"] = state
        click_predict(at, uri)
        errors = tried(at, f"editor {state}")
        rows = prediction_rows(at)
        event("result" if rows is not None else "refused")
        if rows is None:
            assert errors or at.warning, "neither a result nor a message"
            if errors and (added or not delete_first):
                assert names_one_of(errors, list(COLUMNS)) or "row" in errors[0], errors
        else:
            assert rows == len(added) + (0 if delete_first else 1)

    case()


# -- Predict: the JSON editor ---------------------------------------------------------------

FORMAT_CHOICES = [AUTO_FORMAT, *(f.value for f in JSON_FORMATS)]
IRIS_COLUMNS = ("sepal_length", "sepal_width", "petal_length", "petal_width")


def json_texts(columns: tuple[str, ...]) -> st.SearchStrategy[str]:
    return st.one_of(
        shaped_bodies(columns).map(dumps),
        json_values.map(dumps),
        tricky_texts,
    )


@pytest.mark.parametrize(
    ("query", "uri", "columns", "result_column"),
    [
        ({"model": "iris-classifier", "version": "1"}, IRIS_URI, IRIS_COLUMNS, "prediction"),
        ({"model": "cancer-risk-scorer", "version": "1"}, CANCER_URI, CANCER_FEATURES, "label"),
    ],
    ids=["iris", "cancer"],
)
def test_json_editor_with_each_format_predicts_or_says_why(
    home, query, uri, columns, result_column
):
    FIGURES.measured(SUITE, "cases tried", "crashes")
    at = open_predict(query, uri, SOURCE_JSON)
    key = editor_key(uri)

    @examples(default=15, long=60)
    @given(text=json_texts(columns), choice=st.sampled_from(FORMAT_CHOICES))
    def case(text: str, choice: str) -> None:
        at.selectbox(key=f"{key}_json_format").set_value(choice)
        at.text_area(key=f"{key}_json_text").input(text)
        click_predict(at, uri)
        errors = tried(at, f"{choice}: {text[:300]!r}")
        shown = prediction_rows(at, result_column) is not None
        event("result" if shown else "refused")
        if not shown:
            assert errors or at.warning, "neither a result nor a message"
        assert at.text_area(key=f"{key}_json_text").value == text
        assert at.selectbox(key=f"{key}_json_format").value == choice

    case()


# -- Deploy: names and instance count --------------------------------------------------------

TRICKY_NAMES = (
    "",
    " ",
    "ab",
    "abc",
    "ABC",
    "Ab-1",
    "a--b",
    "-ab",
    "ab-",
    "ep_1",
    "9ab",
    "a b",
    "../x",
    "..",
    "x" * 32,
    "x" * 33,
    "  padded-name  ",
    "éclair",
    "a\x00bc",
    "\u202eabc",
    "abc\n",
    "CON",
    "%2e%2e",
)
# Names that follow Azure's rule, twice in the mix: half the names drawn are valid, so valid
# pairs reach the enabled-button check too.
valid_names = st.from_regex(r"[A-Za-z][A-Za-z0-9]{2,5}(-[A-Za-z0-9]{1,5}){0,3}", fullmatch=True)
names_typed = st.one_of(
    valid_names,
    st.sampled_from(TRICKY_NAMES),
    valid_names,
    st.text(max_size=40),
)


def azure_valid(name: str) -> bool:
    """Azure's rule, written from its docs rather than taken from deploystudio: 3-32 ASCII
    letters, digits and single dashes, starting with a letter, not ending with a dash."""
    return (
        3 <= len(name) <= 32
        and re.fullmatch(r"[A-Za-z](?:[A-Za-z0-9-]*[A-Za-z0-9])?", name, flags=re.ASCII) is not None
        and "--" not in name
    )


def test_deploy_names_and_instances_are_refused_before_anything_starts(home):
    FIGURES.measured(SUITE, "cases tried", "crashes")
    at = open_page("views/deploy.py", {"model": "iris-classifier", "version": "1"})
    target = services.local_endpoints().target

    @examples(default=20, long=80)
    @given(
        endpoint=names_typed,
        deployment=names_typed,
        # Past the bounds, Streamlit's number input shows its default instead (kept()).
        instances=st.integers(-2, MAX_INSTANCES + 2) | st.sampled_from([2**31, -(2**31)]),
    )
    def case(endpoint: str, deployment: str, instances: int) -> None:
        at.text_input(key="deploy_new_endpoint__iris-classifier").input(endpoint)
        at.text_input(key="deploy_deployment_name__new").input(deployment)
        at.number_input(key="deploy_instances").set_value(instances)
        at.run()
        errors = tried(at, f"endpoint {endpoint!r}, deployment {deployment!r}, x{instances}")
        good_endpoint = azure_valid(endpoint.strip())
        good_deployment = azure_valid(deployment.strip())
        shown_count = at.number_input(key="deploy_instances").value
        assert kept(shown_count, instances, 1, MAX_INSTANCES), (shown_count, instances)
        good_count = 1 <= shown_count <= MAX_INSTANCES
        button = at.button(key="deploy_submit")
        event("refused" if button.disabled else "accepted")
        if good_endpoint and good_deployment and good_count:
            assert not errors and not button.disabled, errors
        else:
            assert button.disabled
            if not good_endpoint:
                assert any(e.startswith("Endpoint name") and "Choose" in e for e in errors)
            if not good_deployment:
                assert any(e.startswith("Deployment name") and "Choose" in e for e in errors)
            if not good_count:
                assert any("instance count" in e for e in errors), errors
            # AppTest refuses to click a disabled button, as a browser does: nothing started.
            assert "deploy_operation" not in at.session_state
            assert not target.list_endpoints()
        assert at.text_input(key="deploy_new_endpoint__iris-classifier").value == endpoint
        assert at.text_input(key="deploy_deployment_name__new").value == deployment

    case()


# -- Endpoints: traffic sliders, mirror and the delete confirmation --------------------------

FUZZ_ENDPOINT = "fuzz-ep"
FUZZ_DEPLOYMENTS = ("blue", "green", "red")


@pytest.fixture(scope="module")
def records_only_endpoint(home):
    """An endpoint with three deployments as store records only: the page reads and checks
    them, and no case here may start a server."""
    store = services.local_endpoints().target.store
    store.create_endpoint(FUZZ_ENDPOINT, auth_mode="none")
    for name in FUZZ_DEPLOYMENTS:
        store.create_deployment(FUZZ_ENDPOINT, name, IRIS_URI)
    return store.get_endpoint(FUZZ_ENDPOINT)


def test_endpoint_traffic_and_delete_confirmation_refuse_before_applying(
    home, records_only_endpoint
):
    FIGURES.measured(SUITE, "cases tried", "crashes")
    at = open_page("views/endpoints.py", {"endpoint": FUZZ_ENDPOINT, "tab": "Traffic"})
    target = services.local_endpoints().target
    key = traffic_key(target.get_endpoint(FUZZ_ENDPOINT))

    @examples(default=10, long=40)
    @given(
        remainder=st.sampled_from(FUZZ_DEPLOYMENTS),
        weights=st.lists(st.integers(0, 100), min_size=2, max_size=2),
        mirror_to=st.sampled_from(["(no mirror)", *FUZZ_DEPLOYMENTS]),
        mirror=st.integers(0, 100),
    )
    def case(remainder, weights, mirror_to, mirror) -> None:
        at.selectbox(key=f"{key}_remainder").set_value(remainder).run()
        others = [n for n in FUZZ_DEPLOYMENTS if n != remainder]
        for name, weight in zip(others, weights, strict=True):
            at.slider(key=f"{key}_weight_{name}").set_value(weight)
        at.selectbox(key=f"{key}_mirror_to").set_value(mirror_to)
        at.number_input(key=f"{key}_mirror_percent").set_value(mirror)
        at.run()
        errors = tried(at, f"traffic {remainder} {weights} mirror {mirror_to} {mirror}")
        apply = at.button(key=f"{key}_apply")
        if sum(weights) > 100:
            assert apply.disabled
            assert any(f"{sum(weights)}%" in e and remainder in e for e in errors), errors
        else:
            assert not apply.disabled and not errors, errors
        assert at.slider(key=f"{key}_weight_{others[0]}").value == weights[0]
        assert at.number_input(key=f"{key}_mirror_percent").value == mirror
        stored = target.get_endpoint(FUZZ_ENDPOINT)
        assert (stored.traffic, stored.mirror) == (
            records_only_endpoint.traffic,
            records_only_endpoint.mirror,
        )

    case()

    at = open_page("views/endpoints.py", {"endpoint": FUZZ_ENDPOINT, "tab": "Deployments"})
    confirm_key, delete_key = f"delete_{FUZZ_ENDPOINT}_confirm", f"delete_{FUZZ_ENDPOINT}"

    @examples(default=8, long=40)
    @given(confirm=texts_typed.filter(lambda t: t != FUZZ_ENDPOINT))
    def confirm_case(confirm: str) -> None:
        at.text_input(key=confirm_key).input(confirm).run()
        tried(at, f"delete confirmation {confirm!r}")
        assert at.button(key=delete_key).disabled  # AppTest, like a browser, cannot click it
        assert at.text_input(key=confirm_key).value == confirm
        assert target.get_endpoint(FUZZ_ENDPOINT).name == FUZZ_ENDPOINT

    confirm_case()


# -- Batch: the folder path and the settings -------------------------------------------------


def batch_paths(root: Path) -> st.SearchStrategy[tuple[str, bool | None]]:
    """A typed path and whether it lies inside the root (None: blank, nothing to check)."""
    outside = [
        "/",
        "/etc",
        "/etc/passwd",
        "..",
        "../",
        "../../etc",
        "file:///etc/passwd",
        f"file://{root}",
        "%2e%2e/%2e%2e/etc",
        "~",
        "~/x",
        "~nosuchuser-form-fuzz/x",
        "a\x00b",
        f"{root}/../outside",
        f"{root}/../..",
        f"{root}/./../{root.name}x",  # a sibling sharing the root's name as a prefix
        f"{root}x",
        f"{root}\x00",
        "//etc",
        "/" + "a" * 5000,
        f"{root}/" + "/".join(["a" * 255] * 20) + "/../" * 21 + "..",
        "\\..\\..\\",
        "C:\\Windows",
    ]
    inside = [
        str(root),
        f"{root}/",
        f"{root}/sub",
        f"{root}/sub/../sub",
        f"{root}/%2e%2e",  # a folder literally named so, inside the root
        f"{root}/nothing.csv",
        f"  {root}/sub  ",
        f"{root}/" + "b" * 300,
    ]
    relative = st.text(min_size=1, max_size=40).filter(
        lambda t: t.strip() and not t.strip().startswith(("/", "~"))
    )
    return st.one_of(
        st.sampled_from(outside).map(lambda p: (p, False)),
        st.sampled_from(inside).map(lambda p: (p, True)),
        relative.map(lambda p: (p, False)),  # read from the app's working folder: outside
        st.sampled_from(["", " ", "\t"]).map(lambda p: (p, None)),
    )


SETTINGS_LIMITS = {
    "batch_mini_batch_size": ("mini_batch_size", 1, 100_000),
    "batch_concurrency": ("max_concurrency_per_instance", 1, 64),
    "batch_error_threshold": ("error_threshold", -1, 2**31 - 1),
    "batch_max_retries": ("max_retries", 0, 100),
    "batch_timeout": ("timeout", 1, 7 * 24 * 3600),
}


def at_and_past(low: int, high: int) -> st.SearchStrategy[int]:
    return st.sampled_from([low - 1, low, high, high + 1]) | st.integers(low, high)


def good_file_name(name: str) -> bool:
    name = name.strip()
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..")


def test_batch_folder_and_settings_are_refused_or_stop_before_a_job(home):
    FIGURES.measured(SUITE, "cases tried", "crashes")
    root = home / "batch-inputs"
    at = open_page("views/batch.py", {"model": "iris-classifier", "version": "1"})
    at.radio(key="batch_source").set_value("folder").run()
    assert not at.exception, [e.value for e in at.exception]

    @examples(default=30, long=80)
    @given(
        path=batch_paths(root),
        numbers=st.fixed_dictionaries({k: at_and_past(lo, hi) for k, (_, lo, hi) in
                                       SETTINGS_LIMITS.items()}),
        file_name=st.sampled_from(
            ["predictions.csv", "", " ", ".", "..", "../x.csv", "/tmp/x.csv", "a\\b.csv",
             "é.csv", "x" * 300, "\x00", "a/b", "%2e%2e"]
        ) | texts_typed.filter(lambda t: len(t) < 500),
    )  # fmt: skip
    def case(path: tuple[str, bool | None], numbers: dict[str, int], file_name: str) -> None:
        typed, inside = path
        at.text_input(key="batch_folder").input(typed)
        for key, value in numbers.items():
            at.number_input(key=key).set_value(value)
        at.text_input(key="batch_output_file_name").input(file_name)
        at.run()
        errors = tried(at, f"path {typed[:200]!r}, {numbers}, file {file_name[:100]!r}")
        for key, value in numbers.items():  # past the bounds: Streamlit's default instead
            _, low, high = SETTINGS_LIMITS[key]
            assert kept(at.number_input(key=key).value, value, low, high), (key, value)
        good_settings = good_file_name(file_name)
        if inside is False:
            refusals = ("outside the folders", "real folder path", "home folder")
            assert any(r in e for r in refusals for e in errors), errors
        if inside and good_settings:
            assert not errors, errors
        if not good_settings:
            assert names_one_of(errors, ["output_file_name"]), errors
        run = at.button(key="batch_run")
        event("refused" if run.disabled else "sent to the job check")
        assert run.disabled == (not inside or not good_settings)
        if not run.disabled:  # the root holds no file: the job's own input check stops it
            run.click().run()
            errors = tried(at, "a click on Run")
            # An empty root, a missing name, or a name over the OS's length limit.
            stops = ("no files", "does not exist", "cannot be read (File name too long)")
            assert any(stop in e for stop in stops for e in errors), errors
        assert "job" not in at.query_params
        assert at.text_input(key="batch_folder").value == typed
        assert at.text_input(key="batch_output_file_name").value == file_name

    case()
