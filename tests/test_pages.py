"""The app and its pages through streamlit.testing.v1.AppTest, against the seeded registry."""

from __future__ import annotations

import shutil

import pytest
from streamlit.testing.v1 import AppTest

from components import services
from tests.conftest import REPO_ROOT

APP = str(REPO_ROOT / "app.py")
INSPECT = "views/inspect.py"
BROWSE = "views/browse.py"


def clear_app_caches() -> None:
    # The cached functions outlive one AppTest (their module stays imported): clear each.
    services.get_registry.clear()
    services.refresh_registry_listings()


@pytest.fixture(autouse=True)
def fresh_caches():
    clear_app_caches()
    yield
    clear_app_caches()


def run_app(query_params: dict | None = None, page: str = BROWSE) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page(page)
    for key, value in (query_params or {}).items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def all_markdown(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def test_browse_lists_the_seeded_models(seeded):
    at = run_app()
    assert at.title[0].value == "Registered models"
    names = set(at.dataframe[0].value["name"])
    assert {"iris-classifier", "digits-tensor", "wine-no-signature"} <= names
    assert "Embedded MLflow store" in at.sidebar.caption[0].value


def test_browse_search_narrows_the_table(seeded):
    at = run_app()
    at.text_input[0].input("iris").run()
    names = list(at.dataframe[0].value["name"])
    # Other tests register iris wrappers of their own in this session's registry.
    assert "iris-classifier" in names and all("iris" in name for name in names)
    assert "digits-tensor" not in names
    at.text_input[0].input("no-model-has-this-name").run()
    assert not at.dataframe
    assert "No registered models match" in at.info[0].value


def test_browse_tag_and_alias_filters(seeded):
    at = run_app()
    at.text_input[1].input("input=tensor").run()
    assert list(at.dataframe[0].value["name"]) == ["digits-tensor"]
    at.text_input[1].input("").run()
    at.text_input[2].input("challenger").run()
    assert list(at.dataframe[0].value["name"]) == ["iris-classifier"]


def test_browse_bad_tag_filter_is_an_error_message(seeded):
    at = run_app()
    at.text_input[1].input("=demo").run()
    assert not at.exception
    assert "key=value" in at.error[0].value


def test_browse_pages_through_the_registry(seeded, monkeypatch):
    monkeypatch.setenv("DEPLOYSTUDIO_PAGE_SIZE", "2")
    at = run_app()
    first = list(at.dataframe[0].value["name"])
    assert len(first) == 2
    next_button = next(b for b in at.button if b.label == "Next →")
    next_button.click().run()
    second = list(at.dataframe[0].value["name"])
    assert len(second) == 2 and not set(first) & set(second)
    previous = next(b for b in at.button if b.label == "← Previous")
    previous.click().run()
    assert list(at.dataframe[0].value["name"]) == first


def test_selected_model_shows_versions_and_inspect_links(seeded):
    at = run_app({"model": "iris-classifier"})
    versions = at.dataframe[1].value
    assert list(versions["version"]) == [2, 1]
    assert list(versions["aliases"]) == ["challenger", "champion"]
    links = [e for e in at.main if e.type == "page_link"]
    labels = [link.proto.label for link in links]
    assert "Inspect version 2 (challenger)" in labels
    assert "model=iris-classifier" in links[0].proto.query_string


def test_browse_unknown_selected_model_is_an_error_message(seeded):
    at = run_app({"model": "no-such-model"})
    assert "does not exist" in at.error[0].value


def test_inspect_shows_signature_report_and_tabs(seeded):
    at = run_app({"model": "iris-classifier", "version": "2"}, page=INSPECT)
    assert at.subheader[0].value == "iris-classifier · version 2"
    signature = at.table[0].value
    assert list(signature["column"]) == [
        "sepal_length",
        "sepal_width",
        "petal_length",
        "petal_width",
    ]
    text = all_markdown(at)
    assert "No-code deployment" in text and "pass]" in text
    assert [t.label for t in at.tabs] == [
        "Signature",
        "Input example",
        "Flavors",
        "Environment",
        "Artifacts",
        "Source run",
        "Lineage",
    ]


def test_inspect_by_alias_in_the_address(seeded):
    at = run_app({"model": "iris-classifier", "alias": "champion"}, page=INSPECT)
    assert at.subheader[0].value == "iris-classifier · version 1"


def test_inspect_model_without_signature_warns(seeded):
    at = run_app({"model": "wine-no-signature", "version": "1"}, page=INSPECT)
    assert any("no signature" in w.value for w in at.warning)
    assert "warn]" in all_markdown(at)


def test_inspect_tensor_model_shows_dtype_and_shape(seeded):
    at = run_app({"model": "digits-tensor", "version": "1"}, page=INSPECT)
    inputs = at.table[0].value
    assert list(inputs["dtype"]) == ["float32"]
    assert list(inputs["shape"]) == ["(-1, 8, 8)"]


def test_inspect_entered_uri_updates_the_address(seeded):
    at = run_app(page=INSPECT)
    assert "Open a version" in at.info[0].value
    at.text_input[0].input("models:/cancer-risk-scorer/1").run()
    assert at.query_params["model"] == "cancer-risk-scorer"
    params = at.table[2].value
    assert list(params["param"]) == ["threshold"]


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("models:/no-such-model/1", "does not exist"),
        ("models:/iris-classifier/99", "does not exist"),
        ("models:/iris", "models:/NAME/VERSION"),
        ("s3://bucket/model", "Unsupported model URI"),
        ("/etc", "model roots"),
    ],
)
def test_inspect_bad_input_is_a_message_not_a_traceback(seeded, uri, message):
    at = run_app({"uri": uri}, page=INSPECT)
    assert message in at.error[0].value


def test_inspect_local_folder_inside_a_configured_root(
    seeded, monkeypatch, tmp_path, azure_diabetes_model
):
    shutil.copytree(azure_diabetes_model, tmp_path / "model")
    monkeypatch.setenv("DEPLOYSTUDIO_MODEL_ROOTS", str(tmp_path))
    at = run_app({"uri": str(tmp_path / "model")}, page=INSPECT)
    text = all_markdown(at)
    assert "Python version" in text and "3.12.3" in text
    assert "Saved with scikit-learn" in text


def test_unreachable_registry_is_a_banner_not_a_hang(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    at = run_app()
    assert "did not answer" in at.error[0].value
    assert "127.0.0.1:9" in at.sidebar.caption[0].value


def test_browse_tag_filter_that_finds_nothing_suggests_existing_tags(seeded):
    at = run_app()
    at.text_input(key="browse_tag").input("framework=sklearn").run()
    assert "No registered models match" in at.info[0].value
    suggestions = [b for b in at.button if b.key and b.key.startswith("browse_tag_suggestion")]
    assert suggestions[0].label == "framework=scikit-learn"
    suggestions[0].click().run()
    assert at.text_input(key="browse_tag").value == "framework=scikit-learn"
    names = set(at.dataframe[0].value["name"])
    assert {"iris-classifier", "diabetes-regressor"} <= names


def test_browse_alias_filter_that_finds_nothing_suggests_existing_aliases(seeded):
    at = run_app()
    at.text_input(key="browse_alias").input("champ").run()
    assert "No registered models match" in at.info[0].value
    suggestion = next(b for b in at.button if b.label == "champion")
    suggestion.click().run()
    assert "iris-classifier" in set(at.dataframe[0].value["name"])


@pytest.mark.parametrize("first_page", [INSPECT, "views/deploy.py"])
def test_batch_starts_from_the_model_chosen_on_another_page(seeded, first_page):
    at = run_app({"model": "diabetes-regressor", "version": "1"}, page=first_page)
    # The sidebar's links carry no address: only the session remembers the model.
    for name in list(at.query_params):
        del at.query_params[name]
    at.switch_page("views/batch.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="deploy_model").value == "diabetes-regressor"
    assert at.query_params["model"] == "diabetes-regressor"
    assert at.query_params["version"] == "1"


def test_batch_without_a_model_chosen_anywhere_asks_for_one(seeded):
    at = run_app(page="views/batch.py")
    assert at.selectbox(key="deploy_model").value is None


def test_batch_settings_are_labelled_in_words_with_azure_names_as_help(seeded):
    at = run_app({"model": "iris-classifier", "version": "1"}, page="views/batch.py")
    mini_batch = at.number_input(key="batch_mini_batch_size")
    assert mini_batch.label == "Files per mini-batch"
    assert "`mini_batch_size`" in mini_batch.help
    assert "`retry_settings.timeout`" in at.number_input(key="batch_timeout").help
    labels = [w.label for w in [*at.number_input, *at.selectbox, *at.text_input]]
    assert not any("_" in label for label in labels), labels
    output = at.selectbox(key="batch_output_action")
    assert output.options == ["Every prediction, in one file", "Only the job's summary"]
    assert output.value == "append_row"
