"""The Customize page through AppTest: wrap, compare and register; a scoring script validated in
the real inference server and saved as a bundle."""

from __future__ import annotations

import hashlib
import json
import re
import time

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from components import services
from components.script_editor import edited_script, error_marks, generation_key
from components.script_panel import marked_failure
from components.wrap_options import KIND_LABELS, pairs_to_mapping
from components.wrap_panel import side_by_side
from deploystudio.customization.bundles import BundleStore
from deploystudio.customization.scoring_script import ScriptTemplate
from deploystudio.customization.wrapping import WrapperKind
from deploystudio.deployment.actors import local_user
from tests.conftest import REPO_ROOT
from tests.page_support import (  # noqa: F401 (fixtures)
    fresh_caches,
    prediction_worker_stopped_at_the_end,
    rerun,
)

APP = str(REPO_ROOT / "app.py")
CUSTOMIZE = "views/customize.py"
IRIS_URI = "models:/iris-classifier/1"
IRIS_CLASSES = ["setosa", "versicolor", "virginica"]
# Building loads the model in the worker, validating starts a server: allow for a busy machine.
TIMEOUT = 240


def page_key(uri: str) -> str:
    return "customize_" + hashlib.sha256(uri.encode()).hexdigest()[:12]


def open_customize(query_params: dict) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page(CUSTOMIZE)
    for name, value in query_params.items():
        at.query_params[name] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def iris_query() -> dict:
    return {"model": "iris-classifier", "version": "1"}


def test_page_lists_the_wrappers_and_why_one_does_not_apply(seeded):
    at = open_customize({"model": "cancer-risk-scorer", "version": "1"})
    assert at.title[0].value == "Customize inference"
    assert at.subheader[0].value == "cancer-risk-scorer · version 1"
    key = f"{page_key('models:/cancer-risk-scorer/1')}_wrap"
    kind = at.radio(key=f"{key}_kind")
    assert kind.options == [KIND_LABELS[k] for k in WrapperKind]
    kind.set_value(WrapperKind.PIPELINE)
    rerun(at)
    # A custom pyfunc is not an sklearn-flavor model: the page says so instead of failing later.
    assert any("does not apply" in w.value for w in at.warning), [w.value for w in at.warning]
    assert not [b for b in at.button if b.key == f"{key}_build"]


def test_probabilities_build_compares_then_registers_a_new_model(seeded, registry, monkeypatch):
    at = open_customize(iris_query())
    key = f"{page_key(IRIS_URI)}_wrap"
    at.radio(key=f"{key}_kind").set_value(WrapperKind.PROBABILITIES)
    rerun(at)
    # A worker that takes 2 s to answer, as a cold one does: the page must count them.
    worker = services.prediction_worker()
    call = worker.call

    def slow_call(*args, **kwargs):
        time.sleep(2)
        return call(*args, **kwargs)

    monkeypatch.setattr(worker, "call", slow_call)
    at.button(key=f"{key}_build").click()
    rerun(at)
    monkeypatch.undo()
    assert not at.error, [e.value for e in at.error]
    building = at.session_state[f"{key}_built"].preview.seconds
    shown = next(c.value for c in at.caption if c.value.startswith("Built in "))
    waited = float(re.match(r"Built in ([\d.]+) s", shown).group(1))
    assert waited >= building + 2, shown
    table = next(d.value for d in at.dataframe if "original: prediction" in d.value.columns)
    assert [f"wrapped: {c}" for c in IRIS_CLASSES] == [
        c for c in table.columns if c.startswith("wrapped: ")
    ]
    probabilities = table[[f"wrapped: {c}" for c in IRIS_CLASSES]].to_numpy()
    assert probabilities.sum(axis=1) == pytest.approx([1.0] * len(table))
    # The most probable class is the class the original model predicted.
    best = [IRIS_CLASSES[i] for i in probabilities.argmax(axis=1)]
    assert best == list(table["original: prediction"])

    at.text_input(key=f"{key}_target").input("test-page-iris-proba")
    at.button(key=f"{key}_register").click()
    rerun(at)
    assert not at.error, [e.value for e in at.error]
    assert any("Registered **test-page-iris-proba** version **1**" in s.value for s in at.success)
    version = registry.client.get_model_version("test-page-iris-proba", "1")
    assert version.tags["deploystudio.wrapped_from"] == IRIS_URI
    assert version.tags["deploystudio.wrapper_kind"] == WrapperKind.PROBABILITIES.value
    # Signed by this session's user (no sign-in: the OS user), not MLflow's "unknown".
    assert registry.get_run(version.run_id).user_id == local_user()

    # A second click would only register the same wrapper again: the page asks first.
    register = at.button(key=f"{key}_register")
    assert register.disabled
    assert any("already has this wrapper" in i.value for i in at.info), [i.value for i in at.info]
    assert [v.version for v in registry.list_versions("test-page-iris-proba")] == ["1"]
    at.checkbox(key=f"{key}_register_copy__test-page-iris-proba__1").check()
    rerun(at)
    at.button(key=f"{key}_register").click()
    rerun(at)
    assert [v.version for v in registry.list_versions("test-page-iris-proba")] == ["2", "1"]


def test_a_failing_custom_wrapper_shows_why_and_offers_no_registration(seeded):
    at = open_customize(iris_query())
    key = f"{page_key(IRIS_URI)}_wrap"
    at.radio(key=f"{key}_kind").set_value(WrapperKind.CUSTOM_CODE)
    rerun(at)
    code = at.text_area(key=f"{key}_{WrapperKind.CUSTOM_CODE.value}_code")
    code.input(code.value.replace("def predict(", "def predict(\n", 1) + "\n)(")
    at.button(key=f"{key}_build").click()
    rerun(at)
    assert at.error and "line" in at.error[0].value, [e.value for e in at.error]
    assert not [b for b in at.button if b.key == f"{key}_register"]
    # What the user typed is still there to fix.
    assert at.text_area(key=f"{key}_{WrapperKind.CUSTOM_CODE.value}_code").value.endswith(")(")


def test_script_validates_in_the_real_server_and_saves_a_bundle(seeded, settings):
    at = open_customize(iris_query())
    key = f"{page_key(IRIS_URI)}_script"
    script = at.session_state[f"{key}_script"]
    assert "def init()" in script and "def run(" in script
    assert "azureml-inference-server-http" in at.text_area(key=f"{key}_conda").value
    at.button(key=f"{key}_validate").click()
    rerun(at)
    assert not at.error, [e.value for e in at.error]
    assert at.success, "validation did not report success"
    predictions = json.loads(at.json[-1].value)
    assert len(predictions) == 5 and set(predictions) <= set(IRIS_CLASSES), predictions

    at.text_input(key=f"{key}_bundle_name").input("test-page-iris-script")
    at.button(key=f"{key}_save").click()
    rerun(at)
    assert not at.error, [e.value for e in at.error]
    assert any(
        "Saved bundle **test-page-iris-script** version **1**" in s.value for s in at.success
    )
    bundle = BundleStore(settings.home / "bundles").get("test-page-iris-script")
    assert bundle.validated and bundle.script() == script
    assert any(b.key == f"{key}_download" for b in at.get("download_button"))
    saved = next(d.value for d in at.dataframe if "saved by" in d.value.columns)
    assert list(saved["saved by"]) == [local_user()]

    # Saving the same script again would only add a copy: the page asks first.
    assert at.button(key=f"{key}_save").disabled
    assert any("already holds this script" in i.value for i in at.info), [i.value for i in at.info]
    at.checkbox(key=f"{key}_save_copy__test-page-iris-script:1").check()
    rerun(at)
    at.button(key=f"{key}_save").click()
    rerun(at)
    versions = BundleStore(settings.home / "bundles").versions("test-page-iris-script")
    assert [b.version for b in versions] == [2, 1]
    assert at.button(key=f"{key}_save").disabled  # and again for the copy just made


def test_attaching_an_unvalidated_script_is_not_offered_ticked(seeded):
    at = open_customize(iris_query())
    key = f"{page_key(IRIS_URI)}_script"
    attach = at.checkbox(key=f"{key}_attach__not_validated")
    assert attach.value is False
    assert "not passed validation" in attach.help


def test_a_script_with_a_syntax_error_fails_before_any_server_starts(seeded):
    at = open_customize(iris_query())
    key = f"{page_key(IRIS_URI)}_script"
    broken = "def init():\n    pass\n\ndef run(raw_data)\n"
    # What the editor sends back after an edit (the component does not render in AppTest).
    assert edited_script({"id": "a1", "type": "change", "text": broken}, "old") == broken
    at.session_state[f"{key}_script"] = broken
    at.button(key=f"{key}_validate").click()
    rerun(at)
    message = at.error[0].value
    assert "line 4" in message, message
    # The script round-trips through the page unchanged, and its line 4 is the one marked.
    assert at.session_state[f"{key}_script"] == broken
    failure = marked_failure(at.session_state[f"{key}_validation"])
    assert failure is not None and (failure.script, failure.line) == (broken, 4)
    marks = error_marks(failure.line, failure.message, broken)
    assert [a["row"] for a in marks["annotations"]] == [3]
    assert marks["annotations"][0]["text"] == message
    assert [(m["startRow"], m["type"]) for m in marks["markers"]] == [(3, "fullLine")]


def test_a_new_template_replaces_the_script_in_a_fresh_editor(seeded):
    at = open_customize(iris_query())
    key = f"{page_key(IRIS_URI)}_script"
    before = at.session_state[generation_key(key)]
    at.selectbox(key=f"{key}_template").set_value(ScriptTemplate.PRE_POST)
    rerun(at)
    assert "def preprocess(" in at.session_state[f"{key}_script"]
    # A new editor (new key) shows it: the old one's last edit cannot bring the old text back.
    assert at.session_state[generation_key(key)] == before + 1


def test_editor_responses_and_marks():
    # The editor's first value (no edit yet) and non-text events keep the script.
    assert edited_script({"id": "", "type": "", "text": ""}, "kept") == "kept"
    assert edited_script({"id": "b2", "type": "selection", "text": "x"}, "kept") == "kept"
    assert edited_script(None, "kept") == "kept"
    assert edited_script({"id": "c3", "type": "blur", "text": ""}, "kept") == ""
    # A line past the end (the script got shorter) or none marks nothing.
    assert error_marks(9, "boom", "a\nb\n") == {"annotations": [], "markers": []}
    assert error_marks(None, "", "a") == {"annotations": [], "markers": []}
    assert error_marks(3, "boom", "a\nb\n")["annotations"][0]["row"] == 2


def test_a_bad_address_is_an_error_not_a_traceback(seeded):
    at = open_customize({"model": "no-such-model", "version": "1"})
    assert at.error and "no-such-model" in at.error[0].value


# ----------------------------------------------------------------------------- pure helpers


def test_pair_editor_rows_missing_a_cell_are_left_out():
    frame = pd.DataFrame({"from": ["a", None, " ", "b", "c"], "to": ["x", "y", "z", None, 0]})
    assert pairs_to_mapping(frame, "from", "to") == {"a": "x", "c": 0}


def test_side_by_side_prefixes_each_part():
    class Preview:
        example = pd.DataFrame({"f": [1, 2]})
        original = pd.DataFrame({"prediction": ["a", "b"]})
        wrapped = pd.DataFrame({"a": [0.9, 0.2], "b": [0.1, 0.8]})

    table = side_by_side(Preview())
    assert list(table.columns) == ["input: f", "original: prediction", "wrapped: a", "wrapped: b"]
