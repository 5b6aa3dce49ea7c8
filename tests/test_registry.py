import time

import pytest

from deploystudio.errors import DeployStudioError, ModelNotFoundError, RegistryUnavailableError
from deploystudio.registry import Registry, build_filter, parse_tag_filter

DEMO_NAMES = {
    "iris-classifier",
    "diabetes-regressor",
    "wine-no-signature",
    "cancer-risk-scorer",
    "digits-tensor",
}


def test_first_page_lists_every_demo_model_with_latest_version_and_aliases(registry, seeded):
    page = registry.list_models()
    by_name = {m.name: m for m in page.models}
    # Other tests register models of their own in this session's registry.
    assert set(by_name) >= DEMO_NAMES
    iris = by_name["iris-classifier"]
    assert iris.latest_version == "2"
    assert iris.aliases == {"champion": "1", "challenger": "2"}
    assert iris.tags["dataset"] == "iris"
    assert iris.description.startswith("Iris species")
    assert iris.last_updated is not None
    assert page.next_page_token is None


def test_pages_follow_tokens_without_repeats(registry, seeded):
    seen, token, pages = [], None, 0
    while True:
        page = registry.list_models(page_size=2, page_token=token)
        seen.extend(m.name for m in page.models)
        pages += 1
        token = page.next_page_token
        if token is None:
            break
    everything = [m.name for m in registry.list_models(page_size=1000).models]
    assert pages == -(-len(everything) // 2)
    assert sorted(seen) == sorted(everything) and len(set(seen)) == len(seen)
    assert set(seen) >= DEMO_NAMES


def test_name_search_is_case_insensitive_substring(registry, seeded):
    found = [m.name for m in registry.list_models("IRIS").models]
    assert "iris-classifier" in found and all("iris" in name for name in found)
    assert "wine-no-signature" not in found
    assert {m.name for m in registry.list_models("-").models} >= DEMO_NAMES


def test_tag_filter_by_value_and_by_presence(registry, seeded):
    tensors = registry.list_models(tag=("input", "tensor")).models
    assert [m.name for m in tensors] == ["digits-tensor"]
    pyfuncs = registry.list_models(tag=("framework", "pyfunc")).models
    assert {m.name for m in pyfuncs} == {"cancer-risk-scorer", "digits-tensor"}
    assert [m.name for m in registry.list_models(tag=("input", "")).models] == ["digits-tensor"]


def test_alias_filter_scans_pages_until_the_page_is_full(registry, seeded):
    page = registry.list_models(alias="champion", page_size=2)
    assert {m.name for m in page.models} == {"iris-classifier", "diabetes-regressor"}
    assert page.scanned >= 2
    assert registry.list_models(alias="challenger").models[0].name == "iris-classifier"
    assert registry.list_models(alias="no-such-alias").models == []


def test_versions_newest_first_with_aliases(registry, seeded):
    versions = registry.list_versions("iris-classifier")
    assert [(v.version, v.aliases) for v in versions] == [
        ("2", ("challenger",)),
        ("1", ("champion",)),
    ]
    assert all(v.status == "READY" and v.run_id for v in versions)
    assert registry.resolve_alias("iris-classifier", "champion") == "1"


def test_missing_model_version_and_alias_raise_not_found(registry, seeded):
    with pytest.raises(ModelNotFoundError, match="no-such-model"):
        registry.get_model("no-such-model")
    with pytest.raises(ModelNotFoundError):
        registry.get_version("iris-classifier", "99")
    with pytest.raises(ModelNotFoundError):
        registry.resolve_alias("iris-classifier", "nope")


def test_source_run_has_params_and_metrics(registry, seeded):
    version = registry.get_version("iris-classifier", "2")
    run = registry.get_run(version.run_id)
    assert run.params["C"] == "1.0"
    assert 0.5 < run.metrics["accuracy"] <= 1.0
    assert registry.get_run("0" * 32) is None


def test_filter_strings_quote_values_and_refuse_unquotable_ones():
    assert build_filter("it's") == 'name ILIKE "%it\'s%"'
    assert build_filter("", ("team", "a")) == "tags.`team` = 'a'"
    assert build_filter("x", ("team", "")) == "name ILIKE '%x%' AND tags.`team` LIKE '%'"
    with pytest.raises(DeployStudioError, match="both"):
        build_filter("a'b\"c")
    assert parse_tag_filter(" team = demo ") == ("team", "demo")
    assert parse_tag_filter("") is None
    with pytest.raises(DeployStudioError, match="key=value"):
        parse_tag_filter("=demo")


def test_page_size_out_of_range_is_refused(registry, seeded):
    with pytest.raises(DeployStudioError, match="between 1 and 1000"):
        registry.list_models(page_size=0)


def test_unreachable_server_answers_quickly_with_a_clear_message():
    started = time.monotonic()
    registry = Registry("http://user:pw@127.0.0.1:9")
    with pytest.raises(RegistryUnavailableError) as error:
        registry.list_models()
    assert time.monotonic() - started < 30
    message = str(error.value)
    assert "did not answer" in message and "127.0.0.1:9" in message
    assert "pw" not in message
