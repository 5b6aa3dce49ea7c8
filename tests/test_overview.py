"""The overview's facts, plain-word history and the one time format (pure domain, no server)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from deploystudio.deployment.audit_words import describe, value_text
from deploystudio.deployment.base import (
    AuditEntry,
    AuthMode,
    Deployment,
    DeploymentState,
    Endpoint,
    Runtime,
)
from deploystudio.overview import (
    EndpointHealth,
    RegistryFacts,
    next_steps,
    registry_facts,
    served_version,
    suggest_tags,
    tag_suggestions,
)
from deploystudio.registry import ModelSummary
from deploystudio.times import ago, format_time

NOW = datetime(2026, 12, 5, 5, 0, tzinfo=UTC)


def entry(action: str, target: str, field: str | None, previous, new) -> AuditEntry:
    return AuditEntry(1, NOW, "ana", action, target, field, previous, new)


def model(name: str, aliases: dict[str, str], tags: dict[str, str] | None = None) -> ModelSummary:
    latest = max(aliases.values(), default="1")
    return ModelSummary(name, "", latest, aliases, tags or {}, NOW, NOW)


def endpoint(name: str, traffic: dict[str, int]) -> Endpoint:
    return Endpoint(
        name, AuthMode.KEY, None, None, None, DeploymentState.READY, None, traffic, None, NOW, NOW
    )


def deployment(ep: str, name: str, uri: str, state=DeploymentState.READY) -> Deployment:
    return Deployment(ep, name, uri, Runtime.MLFLOW, None, state, None, None, 1, 1, None, NOW, NOW)


def test_traffic_change_reads_as_words_with_before_and_after():
    change = entry(
        "set_traffic", "ep", "traffic", {"blue": 100, "green": 0}, {"blue": 80, "green": 20}
    )
    assert describe(change) == "Changed the traffic of endpoint ep"
    assert "set_traffic" not in describe(change)
    assert value_text(change.previous, change.field) == "blue 100%"
    assert value_text(change.new, change.field) == "blue 80% · green 20%"
    mirror = entry("set_traffic", "ep", "mirror", None, ["green", 10])
    assert describe(mirror) == "Changed the mirrored traffic of endpoint ep"
    assert value_text(mirror.previous, "mirror") == ""
    assert value_text(mirror.new, "mirror") == "green 10%"


def test_other_actions_read_as_words_and_no_value_is_json():
    created = entry("create", "ep/blue", None, None, {"model_uri": "models:/iris/1", "port": None})
    assert describe(created) == "Created deployment ep/blue"
    assert value_text(created.new) == "model uri: models:/iris/1"
    process = entry(
        "set_process", "ep/blue", "process", None, {"pid": 12, "port": 5001, "log": "x"}
    )
    assert value_text(process.new, process.field) == "process 12 on port 5001"
    assert describe(entry("regenerate_key", "ep", "primary_key", None, "regenerated")) == (
        "Regenerated a key of endpoint ep"
    )
    assert describe(entry("batch_start", "job-1", None, None, {})) == "Started batch job job-1"
    assert describe(entry("reconcile", "local", None, None, [])) == (
        "Squared records with running servers (local endpoints)"
    )
    for value in ({"a": {"b": 1}}, [1, 2], {"state": "ready"}):
        assert "{" not in value_text(value) and "[" not in value_text(value)


def test_one_time_format_local_with_how_long_ago():
    assert ago(NOW - timedelta(seconds=20), NOW) == "just now"
    assert ago(NOW - timedelta(minutes=5, seconds=10), NOW) == "5 min ago"
    assert ago(NOW - timedelta(hours=3), NOW) == "3 h ago"
    assert ago(NOW - timedelta(days=2), NOW) == "2 days ago"
    assert ago(NOW + timedelta(minutes=2), NOW) == "in 2 min"
    local = NOW.astimezone().strftime("%Y-%m-%d %H:%M")
    assert format_time(NOW - timedelta(minutes=5), NOW).endswith("(5 min ago)")
    assert format_time(NOW, NOW) == f"{local} (just now)"
    # A naive time is UTC, as the stores write it.
    assert format_time(NOW.replace(tzinfo=None), NOW) == f"{local} (just now)"
    assert format_time(None) == ""


def test_tag_suggestions_offer_existing_keys_and_values_most_used_first():
    models = [
        model("a", {}, {"framework": "scikit-learn", "team": "x"}),
        model("b", {}, {"framework": "scikit-learn"}),
        model("c", {}, {"framework": "pytorch"}),
    ]
    assert tag_suggestions(models) == {
        "framework": ["scikit-learn", "pytorch"],
        "team": ["x"],
    }


def test_served_version_reads_registered_uris_only():
    served = served_version(deployment("ep", "blue", "models:/iris/3"))
    assert (served.model, served.version, served.endpoint) == ("iris", "3", "ep")
    by_alias = served_version(deployment("ep", "blue", "models:/iris@champion"))
    assert (by_alias.model, by_alias.alias) == ("iris", "champion")
    assert served_version(deployment("ep", "blue", "runs:/abc/model")) is None


def test_next_steps_name_undeployed_champions_and_endpoint_problems():
    facts = RegistryFacts(
        [model("iris", {"champion": "1"}), model("wine", {"champion": "2"}), model("x", {})],
        complete=True,
    )
    healthy = EndpointHealth(
        endpoint("live", {"blue": 100}), [deployment("live", "blue", "models:/iris/1")]
    )
    failing = EndpointHealth(
        endpoint("broken", {"a": 100}),
        [deployment("broken", "a", "models:/wine/1", DeploymentState.FAILED)],
    )
    idle = EndpointHealth(endpoint("idle", {"c": 0}), [deployment("idle", "c", "models:/x/1")])
    steps = next_steps(facts, [healthy, failing, idle], [])
    texts = [s.text for s in steps]
    assert texts[0].startswith("Deploy wine version 2 (champion)")
    assert steps[0].query == {"model": "wine", "version": "2"}
    assert not any("Deploy iris" in t for t in texts)
    assert any("broken: deployment a failed" in t for t in texts)
    assert any("idle sends no live traffic" in t for t in texts)
    assert healthy.healthy and healthy.health == "healthy"
    assert not failing.healthy and failing.health == "0 of 1 deployments ready"


def test_registry_facts_count_the_seeded_registry(registry, seeded):
    facts = registry_facts(registry)
    names = {m.name for m in facts.models}
    assert {"iris-classifier", "diabetes-regressor"} <= names and facts.complete
    assert facts.alias_counts()["champion"] >= 2
    assert facts.versions >= len(facts.models)


def test_tag_suggestions_match_loosely_for_a_filter_that_found_nothing():
    known = {"framework": ["pytorch", "scikit-learn"], "task": ["classification"]}
    assert suggest_tags(("framework", "sklearn"), known)[0] == ("framework", "scikit-learn")
    assert suggest_tags(("frameworks", "scikit"), known)[0] == ("framework", "scikit-learn")
    assert ("task", "classification") in suggest_tags(("tasks", "classif"), known)
    assert suggest_tags(None, known) == []


def test_versions_table_shows_what_each_version_wraps_its_bundle_and_who_serves_it():
    from components.tables import versions_frame
    from deploystudio.customization.bundles import SCORING_BUNDLE_TAG
    from deploystudio.customization.wrap_registration import WRAPPED_FROM_TAG
    from deploystudio.registry import VersionSummary

    def version(number: str, aliases: tuple[str, ...], tags: dict[str, str]) -> VersionSummary:
        return VersionSummary(
            "iris", number, aliases, None, "READY", "s", None, NOW, NOW, "", None, tags
        )

    versions = [
        version("3", ("challenger",), {WRAPPED_FROM_TAG: "models:/iris/1"}),
        version("2", (), {SCORING_BUNDLE_TAG: "iris-score:1"}),
        version("1", ("champion",), {}),
    ]
    served = [
        served_version(deployment("ep", "blue", "models:/iris@champion")),
        served_version(deployment("ep", "green", "models:/iris/3")),
        served_version(deployment("other", "x", "models:/wine/1")),
    ]
    frame = versions_frame(versions, served).set_index("version")
    assert frame.loc[3, "wraps"] == "models:/iris/1"
    assert frame.loc[2, "scoring bundle"] == "iris-score:1"
    assert frame.loc[1, "served by"] == "ep/blue"
    assert frame.loc[3, "served by"] == "ep/green"
    assert frame.loc[2, "served by"] == ""
    assert frame.loc[1, "created"].endswith("(just now)") or "ago" in frame.loc[1, "created"]
