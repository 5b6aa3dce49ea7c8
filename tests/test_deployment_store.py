"""The deployment store on real SQLite files: lifecycle, traffic, keys, audit, concurrency."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import stat
import threading
from collections import deque
from pathlib import Path

import pytest

from deploystudio.config import load_settings
from deploystudio.deployment.base import (
    ALLOWED_TRANSITIONS,
    RUNNING_STATES,
    AuthMode,
    DeploymentState,
    Runtime,
)
from deploystudio.deployment.store import MAX_LOG_TAIL_CHARS, DeploymentStore
from deploystudio.deployment.store_file import SCHEMA_VERSION, store_path
from deploystudio.errors import (
    DeploymentConfigError,
    DeploymentNotFoundError,
    EndpointAuthError,
    EndpointNotFoundError,
    InvalidNameError,
    NameTakenError,
    ResourceInUseError,
    StateTransitionError,
    TrafficError,
)

S = DeploymentState


@pytest.fixture
def store(tmp_path: Path) -> DeploymentStore:
    return DeploymentStore(tmp_path / "deployments.db", actor="alice")


@pytest.fixture
def two(store: DeploymentStore) -> DeploymentStore:
    """An endpoint 'shop' with deployments 'blue' and 'green' (pending, no traffic)."""
    store.create_endpoint("shop")
    store.create_deployment("shop", "blue", "models:/iris-classifier/1")
    store.create_deployment("shop", "green", "models:/iris-classifier/2", runtime="mlflow")
    return store


def _audit_rows(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT * FROM audit").fetchall()


# -- records and persistence --------------------------------------------------------------------


def test_store_lives_in_the_data_folder(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = load_settings({"DEPLOYSTUDIO_HOME": str(home)}, secrets_path=tmp_path / "none.toml")
    store = DeploymentStore.from_settings(settings)
    assert store.path == settings.home / "deployments.db" == store_path(settings)
    assert store.path.is_file()
    # Keys live in this file: only its owner may read it.
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_reopening_the_file_sees_everything(two: DeploymentStore) -> None:
    two.set_state("shop", "blue", S.STARTING, pid=4242, port=5001, log_path="/logs/blue.log")
    two.set_state("shop", "blue", S.READY)
    two.set_traffic("shop", {"blue": 100}, mirror=("green", 20))
    two.set_endpoint_process("shop", 4243, 5000, "http://127.0.0.1:5000/score")
    keys = two.get_keys("shop")

    again = DeploymentStore(two.path, actor="bob")
    endpoint = again.get_endpoint("shop")
    assert endpoint.traffic == {"blue": 100, "green": 0}
    assert endpoint.mirror == ("green", 20)
    assert (endpoint.front_pid, endpoint.front_port) == (4243, 5000)
    assert endpoint.scoring_uri == "http://127.0.0.1:5000/score"
    blue = again.get_deployment("shop", "blue")
    assert (blue.state, blue.pid, blue.port, blue.log_path) == (
        S.READY,
        4242,
        5001,
        "/logs/blue.log",
    )
    assert again.get_deployment("shop", "green").runtime is Runtime.MLFLOW
    assert again.get_keys("shop") == keys
    assert [e.actor for e in again.history("shop")] == ["alice"] * len(again.history("shop"))
    assert len(again.history("shop")) == len(two.history("shop"))


def test_new_records_start_pending_without_traffic(store: DeploymentStore) -> None:
    endpoint = store.create_endpoint("shop", description="demo", tags={"team": "ml"})
    assert endpoint.state is S.PENDING
    assert endpoint.auth_mode is AuthMode.KEY
    assert (endpoint.traffic, endpoint.mirror, endpoint.scoring_uri) == ({}, None, None)
    assert (endpoint.description, endpoint.tags) == ("demo", {"team": "ml"})
    dep = store.create_deployment(
        "shop",
        "blue",
        "models:/iris-classifier/1",
        bundle="score-iris:2",
        settings={"instance_count": 2, "environment_variables": ["API_URL"]},
    )
    assert (dep.state, dep.pid, dep.reason, dep.bundle) == (S.PENDING, None, None, "score-iris:2")
    assert dep.settings == {"instance_count": 2, "environment_variables": ["API_URL"]}
    assert store.get_endpoint("shop").traffic == {"blue": 0}
    assert [d.name for d in store.list_deployments()] == ["blue"]
    as_dict = endpoint.as_dict()
    assert as_dict["name"] == "shop" and json.loads(json.dumps(as_dict)) == as_dict
    assert json.loads(json.dumps(dep.as_dict()))["name"] == "blue"


def test_unknown_names_say_what_exists(two: DeploymentStore) -> None:
    with pytest.raises(EndpointNotFoundError, match=r"'nope'.*Known endpoints: 'shop'"):
        two.get_endpoint("nope")
    with pytest.raises(DeploymentNotFoundError, match=r"'red'.*'blue', 'green'"):
        two.get_deployment("shop", "red")
    with pytest.raises(EndpointNotFoundError):
        two.list_deployments("nope")


def test_names_follow_azures_rule_and_ignore_case(store: DeploymentStore) -> None:
    for bad in ["ab", "1shop", "shop-", "sh--op", "sh_op"]:
        with pytest.raises(InvalidNameError, match="3-32 characters, start with a letter"):
            store.create_endpoint(bad)
    assert store.list_endpoints() == []
    store.create_endpoint("Shop")
    with pytest.raises(NameTakenError, match="'Shop' already exists"):
        store.create_endpoint("shop")
    assert store.get_endpoint("SHOP").name == "Shop"
    store.create_deployment("shop", "blue", "models:/m/1")
    with pytest.raises(NameTakenError, match="already has a deployment named 'blue'"):
        store.create_deployment("Shop", "BLUE", "models:/m/2")
    with pytest.raises(InvalidNameError, match="deployment names are"):
        store.create_deployment("shop", "b", "models:/m/2")
    # Deployment names are unique per endpoint only, as on Azure.
    store.create_endpoint("other")
    assert store.create_deployment("other", "blue", "models:/m/2").endpoint_name == "other"


def test_bad_deployment_config_is_refused(store: DeploymentStore) -> None:
    store.create_endpoint("shop")
    cases = [
        ({"model_uri": " "}, "model URI"),
        ({"runtime": "docker"}, "Unknown runtime 'docker'"),
        ({"bundle": "score"}, "name:version"),
        ({"settings": {"environment_variables": {"TOKEN": "s3cret"}}}, "names only"),
        ({"settings": {"environment_variables": ["NOT VALID"]}}, "names only"),
        ({"settings": {"environment_variables": "TOKEN"}}, "names only"),
        ({"settings": ["instance_count", 2]}, "mapping of names"),
        ({"settings": {"timeout": object()}}, "plain JSON"),
    ]
    for change, message in cases:
        args = {"model_uri": "models:/m/1", "runtime": "azureml", "bundle": None} | change
        with pytest.raises(DeploymentConfigError, match=message):
            store.create_deployment("shop", "blue", **args)
    with pytest.raises(EndpointAuthError, match="do not take auth mode 'aad': choose"):
        store.create_endpoint("other", auth_mode="aad")
    # Azure's token modes are Azure's: a local endpoint with one would be served without a key.
    with pytest.raises(EndpointAuthError, match="checked by Azure only"):
        store.create_endpoint("other", auth_mode="aml_token")
    assert store.list_deployments() == [] and [e.name for e in store.list_endpoints()] == ["shop"]


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "deployments.db"
    DeploymentStore(path)
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(DeploymentConfigError, match="newer Deploy Studio"):
        DeploymentStore(path)


# -- lifecycle ----------------------------------------------------------------------------------


APP_ENVIRONMENT = {"mode": "app", "key": None, "python": "/usr/bin/python3",
                   "python_version": "3.11.7", "reason": "The app's environment, as asked."}
MODEL_ENVIRONMENT = {"mode": "model", "key": "0123abcd", "python": "/e/0123abcd/venv/bin/python",
                     "python_version": "3.11.7", "reason": "as asked (--env model)"}


def test_a_deployment_records_the_environment_its_server_runs_in(store: DeploymentStore) -> None:
    store.create_endpoint("shop")
    store.create_deployment("shop", "blue", "models:/m/1")
    assert store.get_deployment("shop", "blue").environment is None
    assert store.get_deployment("shop", "blue").environment_label == "not recorded"
    started = store.set_state("shop", "blue", S.STARTING, pid=1, port=2, log_path="/l",
                              environment=MODEL_ENVIRONMENT)
    assert started.environment == MODEL_ENVIRONMENT
    assert started.environment_label == (
        "model environment 0123abcd (Python 3.11.7, /e/0123abcd/venv/bin/python)"
    )
    ready = store.set_state("shop", "blue", S.READY)  # kept when not given
    assert ready.environment == MODEL_ENVIRONMENT
    # A rolling update to a server in the app's environment says so, in one transaction.
    switched = store.replace_process("shop", "blue", 3, 4, "/l2", environment=APP_ENVIRONMENT)
    assert switched.environment_label == "the app's environment (Python 3.11.7, /usr/bin/python3)"
    store.set_state("shop", "blue", S.STOPPING)
    stopped = store.set_state("shop", "blue", S.STOPPED)  # what it last ran in stays
    assert DeploymentStore(store.path).get_deployment("shop", "blue") == stopped
    assert stopped.environment == APP_ENVIRONMENT and stopped.as_dict()["environment"]


def test_a_store_written_before_environments_gets_the_column_on_open(tmp_path: Path) -> None:
    path = tmp_path / "deployments.db"
    old = DeploymentStore(path)
    old.create_endpoint("shop")
    old.create_deployment("shop", "blue", "models:/m/1")
    with sqlite3.connect(path) as conn:  # the deployments table as it was before
        conn.execute("ALTER TABLE deployments DROP COLUMN environment")
        assert "environment" not in {r[1] for r in conn.execute("PRAGMA table_info(deployments)")}
    store = DeploymentStore(path)
    blue = store.get_deployment("shop", "blue")
    assert blue.environment is None and blue.model_uri == "models:/m/1"
    started = store.set_state("shop", "blue", S.STARTING, pid=1, port=2,
                              environment=APP_ENVIRONMENT)
    assert started.environment == APP_ENVIRONMENT
    DeploymentStore(path)  # opening it again changes nothing


def _path_to(state: DeploymentState) -> list[DeploymentState]:
    """Shortest list of allowed moves from pending to `state`."""
    queue: deque[list[DeploymentState]] = deque([[S.PENDING]])
    while queue:
        path = queue.popleft()
        if path[-1] is state:
            return path[1:]
        queue.extend([*path, n] for n in sorted(ALLOWED_TRANSITIONS[path[-1]]) if n not in path)
    raise AssertionError(f"{state} cannot be reached from pending")


def test_transition_table_has_the_documented_moves() -> None:
    assert ALLOWED_TRANSITIONS[S.PENDING] == {S.STARTING, S.FAILED}
    assert ALLOWED_TRANSITIONS[S.STARTING] >= {S.READY, S.FAILED}
    assert S.FAILED in ALLOWED_TRANSITIONS[S.READY]  # a health check failed
    assert S.STARTING in ALLOWED_TRANSITIONS[S.FAILED]  # restart
    assert S.STARTING in ALLOWED_TRANSITIONS[S.STOPPED]  # restart
    assert ALLOWED_TRANSITIONS[S.STOPPING] >= {S.STOPPED}
    assert S.READY not in ALLOWED_TRANSITIONS[S.PENDING] | ALLOWED_TRANSITIONS[S.STOPPED]
    assert set(ALLOWED_TRANSITIONS) == set(S)


@pytest.fixture(scope="module")
def lifecycle_store(tmp_path_factory: pytest.TempPathFactory) -> DeploymentStore:
    store = DeploymentStore(tmp_path_factory.mktemp("lifecycle") / "deployments.db")
    store.create_endpoint("life")
    return store


@pytest.mark.parametrize("target", list(S), ids=str)
@pytest.mark.parametrize("source", list(S), ids=str)
def test_every_transition(
    lifecycle_store: DeploymentStore, source: DeploymentState, target: DeploymentState
) -> None:
    store = lifecycle_store
    name = f"d-{source}-{target}"
    store.create_deployment("life", name, "models:/m/1")
    for step in _path_to(source):
        store.set_state("life", name, step, reason="earlier failure", pid=10, port=20)
    assert store.get_deployment("life", name).state is source
    if target in ALLOWED_TRANSITIONS[source]:
        moved = store.set_state("life", name, target, reason="why", log_tail="tail")
        assert moved.state is target
        assert store.history("life", limit=2)[-1].previous == source.value
    else:
        before = store.get_deployment("life", name)
        with pytest.raises(StateTransitionError) as refused:
            store.set_state("life", name, target, reason="why")
        assert f"from '{source}' to '{target}'" in str(refused.value)
        assert store.get_deployment("life", name) == before


def test_a_failed_start_keeps_the_reason_and_log_tail(store: DeploymentStore) -> None:
    store.create_endpoint("shop")
    store.create_deployment("shop", "blue", "models:/m/1")
    store.set_state("shop", "blue", S.STARTING, pid=321, port=5005, log_path="/l/blue.log")
    with pytest.raises(StateTransitionError, match="without a reason"):
        store.set_state("shop", "blue", S.FAILED)
    assert store.get_deployment("shop", "blue").state is S.STARTING
    log = "\n".join(f"line {i}" for i in range(5000)) + "\nModuleNotFoundError: No module named x"
    failed = store.set_state(
        "shop", "blue", S.FAILED, reason="server exited (code 3)", log_tail=log
    )
    again = DeploymentStore(store.path).get_deployment("shop", "blue")
    assert again == failed
    assert again.reason == "server exited (code 3)"
    assert again.log_tail is not None and len(again.log_tail) == MAX_LOG_TAIL_CHARS
    assert again.log_tail.endswith("No module named x")
    # The pid stays so that a target can still stop a process that outlived its health check.
    assert (again.pid, again.port) == (321, 5005)
    restarted = store.set_state("shop", "blue", S.STARTING)
    assert (restarted.reason, restarted.log_tail, restarted.pid) == (None, None, 321)
    store.set_state("shop", "blue", S.STOPPING)
    stopped = store.set_state("shop", "blue", S.STOPPED)
    assert (stopped.pid, stopped.port, stopped.log_path) == (None, None, "/l/blue.log")


def test_a_health_check_cannot_fail_a_server_that_is_being_stopped_or_replaced(
    two: DeploymentStore,
) -> None:
    two.set_state("shop", "blue", S.STARTING, pid=321, port=5005)
    two.set_state("shop", "blue", S.READY)
    two.set_state("shop", "blue", S.STOPPING)  # the target stops it: it stops answering
    with pytest.raises(StateTransitionError, match="changed meanwhile"):
        two.set_state("shop", "blue", S.FAILED, reason="died", only_if=(S.READY, 321))
    assert two.set_state("shop", "blue", S.STOPPED).state is S.STOPPED
    two.set_state("shop", "green", S.STARTING, pid=400, port=5006)
    two.set_state("shop", "green", S.READY)
    with pytest.raises(StateTransitionError, match="pid 400, not ready with pid 399"):
        two.set_state("shop", "green", S.FAILED, reason="died", only_if=(S.READY, 399))
    failed = two.set_state("shop", "green", S.FAILED, reason="died", only_if=(S.READY, 400))
    assert failed.state is S.FAILED


def test_endpoint_front_follows_the_same_lifecycle(store: DeploymentStore) -> None:
    store.create_endpoint("shop")
    with pytest.raises(StateTransitionError, match="from 'pending' to 'ready'"):
        store.set_endpoint_state("shop", S.READY)
    store.set_endpoint_state("shop", S.STARTING)
    store.set_endpoint_process("shop", 99, 5000, "http://127.0.0.1:5000/score")
    assert store.set_endpoint_state("shop", "ready").state is S.READY
    store.set_endpoint_state("shop", S.STOPPING)
    stopped = store.set_endpoint_state("shop", S.STOPPED)
    assert (stopped.front_pid, stopped.front_port) == (None, None)
    process = next(e for e in store.history("shop") if e.field == "process")
    assert process.previous["front_pid"] is None and process.new["front_pid"] == 99


# -- traffic ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "mirror", "message"),
    [
        ({"blue": 60, "green": 30}, None, "sum to 90%"),
        ({"blue": 110, "green": -10}, None, "from 0 to 100, not 110"),
        ({"blue": 100, "green": -1}, None, "from 0 to 100, not -1"),
        ({"blue": 50.0, "green": 50}, None, "whole number"),
        ({"blue": True, "green": 99}, None, "whole number"),
        ({"blue": 100, "red": 0}, None, "no such deployment"),
        ({"blue": 50, "BLUE": 50}, None, "given traffic twice"),
        ({"blue": 100}, ("green", 51), "from 0 to 50, not 51"),
        ({"blue": 100}, ("red", 10), "Cannot mirror traffic to 'red'"),
        ({"blue": 100}, ("blue", 10), "live or mirrored traffic, not both"),
        ({"blue": 100}, ("green", 10, "blue", 10), "one deployment only"),
        ({"blue": 100}, ("green", -5), "from 0 to 50"),
    ],
)
def test_bad_traffic_changes_nothing(
    two: DeploymentStore, weights: dict, mirror: tuple | None, message: str
) -> None:
    two.set_traffic("shop", {"blue": 70, "green": 30})
    before = two.get_endpoint("shop")
    entries = len(_audit_rows(two.path))
    with pytest.raises(TrafficError, match=message):
        two.set_traffic("shop", weights, mirror=mirror)
    assert two.get_endpoint("shop") == before
    assert len(_audit_rows(two.path)) == entries


def test_a_bad_weight_after_good_ones_is_rolled_back(two: DeploymentStore) -> None:
    # The weights are written one by one inside the transaction; the bad one comes last.
    two.set_traffic("shop", {"blue": 0, "green": 100})
    with pytest.raises(TrafficError):
        two.set_traffic("shop", {"blue": 100, "green": "0"})
    with pytest.raises(TrafficError):
        two.set_traffic("shop", {"green": 0, "blue": 100, "red": 0})
    assert DeploymentStore(two.path).get_endpoint("shop").traffic == {"blue": 0, "green": 100}


@pytest.mark.parametrize(
    ("weights", "mirror", "traffic", "stored_mirror"),
    [
        ({"blue": 100}, None, {"blue": 100, "green": 0}, None),
        ({"Blue": 90, "green": 10}, None, {"blue": 90, "green": 10}, None),
        ({}, None, {"blue": 0, "green": 0}, None),
        ({"blue": 0, "green": 0}, None, {"blue": 0, "green": 0}, None),
        ({"blue": 100}, ("GREEN", 50), {"blue": 100, "green": 0}, ("green", 50)),
        ({"blue": 100}, ("green", 0), {"blue": 100, "green": 0}, None),
    ],
)
def test_valid_traffic(
    two: DeploymentStore, weights: dict, mirror: tuple | None, traffic: dict, stored_mirror
) -> None:
    endpoint = two.set_traffic("shop", weights, mirror=mirror)
    assert endpoint.traffic == traffic
    assert endpoint.mirror == stored_mirror
    assert two.get_endpoint("shop") == endpoint


def test_traffic_on_an_endpoint_without_deployments(store: DeploymentStore) -> None:
    store.create_endpoint("empty")
    assert store.set_traffic("empty", {}).traffic == {}
    with pytest.raises(TrafficError, match="no such deployment"):
        store.set_traffic("empty", {"blue": 100})


def test_deleting_a_deployment(two: DeploymentStore) -> None:
    two.set_traffic("shop", {"blue": 100}, mirror=("green", 10))
    with pytest.raises(ResourceInUseError, match="100% of live traffic"):
        two.delete_deployment("shop", "blue")
    with pytest.raises(ResourceInUseError, match="mirrored traffic"):
        two.delete_deployment("shop", "green")
    two.set_traffic("shop", {"blue": 100})
    two.set_state("shop", "green", S.STARTING, pid=7, port=8)
    with pytest.raises(ResourceInUseError, match=r"is starting\. Stop it"):
        two.delete_deployment("shop", "green")
    two.set_state("shop", "green", S.STOPPING)
    two.set_state("shop", "green", S.STOPPED)
    two.delete_deployment("shop", "GREEN")
    assert two.get_endpoint("shop").traffic == {"blue": 100}
    entry = two.history("shop", limit=1)[0]
    assert (entry.action, entry.target, entry.new) == ("delete", "shop/green", None)
    assert entry.previous["model_uri"] == "models:/iris-classifier/2"
    with pytest.raises(DeploymentNotFoundError):
        two.delete_deployment("shop", "green")
    two.delete_deployment("shop", "green", missing_ok=True)
    two.delete_deployment("gone", "green", missing_ok=True)


def test_deleting_an_endpoint(two: DeploymentStore) -> None:
    two.set_traffic("shop", {"blue": 100})
    two.set_state("shop", "blue", S.STARTING)
    with pytest.raises(ResourceInUseError, match="deployments 'blue'"):
        two.delete_endpoint("shop")
    two.set_state("shop", "blue", S.FAILED, reason="port in use")
    two.set_endpoint_state("shop", S.STARTING)
    with pytest.raises(ResourceInUseError, match="front process"):
        two.delete_endpoint("shop")
    assert len(two.list_deployments("shop")) == 2
    two.set_endpoint_state("shop", S.FAILED, reason="front crashed")
    two.delete_endpoint("shop")
    assert two.list_endpoints() == [] and two.list_deployments() == []
    with pytest.raises(EndpointNotFoundError):
        two.get_keys("shop")
    with sqlite3.connect(two.path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM endpoint_keys").fetchone()[0] == 0
    deleted = [e.target for e in two.history("shop") if e.action == "delete"]
    assert deleted == ["shop", "shop/green", "shop/blue"]
    two.delete_endpoint("shop", missing_ok=True)
    with pytest.raises(EndpointNotFoundError):
        two.delete_endpoint("shop")
    # The name is free again.
    assert two.create_endpoint("shop").traffic == {}


def test_running_states_are_the_ones_with_a_process() -> None:
    assert frozenset({S.STARTING, S.READY, S.STOPPING}) == RUNNING_STATES


# -- keys and audit -----------------------------------------------------------------------------


def test_keys_never_leave_through_records_audit_or_repr(store: DeploymentStore) -> None:
    endpoint = store.create_endpoint("shop")
    keys = store.get_keys("shop")
    assert keys.primary != keys.secondary and min(len(keys.primary), len(keys.secondary)) >= 43
    new = store.regenerate_key("shop", "primary")
    assert new.secondary == keys.secondary and new.primary != keys.primary
    assert store.get_keys("shop") == new
    newer = store.regenerate_key("shop", "secondary")
    assert newer.primary == new.primary and newer.secondary != new.secondary
    secrets_seen = {keys.primary, keys.secondary, new.primary, newer.secondary}

    entry = store.history("shop", limit=1)[0]
    assert (entry.field, entry.previous, entry.new) == ("secondary_key", None, "regenerated")
    shown = " ".join(
        [repr(newer), str(newer), repr(endpoint), str(store.get_endpoint("shop"))]
        + [repr(e) for e in store.history()]
        + [json.dumps(store.get_endpoint("shop").as_dict())]
        + [repr(row) for row in _audit_rows(store.path)]
    )
    assert "***" in repr(newer)
    assert not [key for key in secrets_seen if key in shown]
    with pytest.raises(EndpointAuthError, match="'primary' or 'secondary'"):
        store.regenerate_key("shop", "tertiary")


def test_an_endpoint_without_auth_has_no_keys(store: DeploymentStore) -> None:
    store.create_endpoint("open", auth_mode="none")
    with pytest.raises(EndpointAuthError, match="auth mode 'none'"):
        store.get_keys("open")
    with pytest.raises(EndpointAuthError):
        store.regenerate_key("open", "primary")
    assert store.get_endpoint("open").auth_mode is AuthMode.NONE


def test_audit_keeps_previous_values_and_actor(two: DeploymentStore) -> None:
    two.update_endpoint("shop", {"description": "v1 shop"})
    two.update_endpoint("shop", {"description": "v2 shop", "tags": {"stage": "prod"}})
    two.update_endpoint("shop", {"description": "v2 shop"})  # no change, no entry
    two.set_traffic("shop", {"blue": 100})
    two.set_traffic("shop", {"blue": 80, "green": 20})
    other = DeploymentStore(two.path, actor="bob")
    other.update_deployment("shop", "green", {"model_uri": "models:/iris-classifier/3"})
    other.audit("reconcile", "shop/green", endpoint="shop", field="pid", previous=1, new=None)

    history = two.history("shop")
    assert [e.id for e in history] == sorted((e.id for e in history), reverse=True)
    by_field = {(e.field, e.new if not isinstance(e.new, dict) else None): e for e in history}
    assert by_field[("description", "v2 shop")].previous == "v1 shop"
    assert by_field[("description", "v1 shop")].previous == ""
    traffic = [e for e in history if e.field == "traffic"]
    assert [(e.previous, e.new) for e in traffic] == [
        ({"blue": 100, "green": 0}, {"blue": 80, "green": 20}),
        ({"blue": 0, "green": 0}, {"blue": 100, "green": 0}),
    ]
    model = by_field[("model_uri", "models:/iris-classifier/3")]
    assert (model.actor, model.previous, model.target) == (
        "bob",
        "models:/iris-classifier/2",
        "shop/green",
    )
    assert history[0].action == "reconcile" and history[0].actor == "bob"
    assert len([e for e in history if e.field == "description"]) == 2
    assert [e.field for e in two.history("shop", limit=2)] == ["pid", "model_uri"]
    assert two.history("elsewhere") == []
    with pytest.raises(DeploymentConfigError, match="only its description and tags"):
        two.update_endpoint("shop", {"auth_mode": "none"})
    with pytest.raises(DeploymentConfigError, match="Unknown runtime"):
        two.update_deployment("shop", "green", {"runtime": "docker"})
    assert two.get_deployment("shop", "green").runtime is Runtime.MLFLOW


# -- concurrency --------------------------------------------------------------------------------


def _race_in_threads(store: DeploymentStore, name: str) -> list[object]:
    barrier = threading.Barrier(2)
    results: list[object] = []

    def create() -> None:
        barrier.wait()
        try:
            results.append(store.create_endpoint(name).name)
        except NameTakenError as exc:
            results.append(exc)

    threads = [threading.Thread(target=create) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_two_threads_create_the_same_endpoint(store: DeploymentStore) -> None:
    for round_ in range(10):
        results = _race_in_threads(store, f"race-{round_}")
        assert sorted(type(r).__name__ for r in results) == ["NameTakenError", "str"]
        assert "already exists" in str(next(r for r in results if not isinstance(r, str)))
    assert len(store.list_endpoints()) == 10
    assert len([e for e in store.history() if e.action == "create"]) == 10


def _create_in_process(path: str, name: str, barrier, queue) -> None:
    barrier.wait()
    # Opening a brand-new file races on creating the schema too.
    store = DeploymentStore(Path(path))
    try:
        store.create_endpoint(name)
        queue.put("created")
    except NameTakenError as exc:
        queue.put(f"taken: {exc}")


def test_two_processes_create_the_same_endpoint(tmp_path: Path) -> None:
    # forkserver, not fork: forking the test process copies threads that other tests left
    # running (MLflow's download pool) with their locks held, and the child can hang.
    ctx = multiprocessing.get_context("forkserver")
    for round_ in range(5):
        path = tmp_path / f"race-{round_}.db"
        barrier, queue = ctx.Barrier(2), ctx.Queue()
        workers = [
            ctx.Process(target=_create_in_process, args=(str(path), "race", barrier, queue))
            for _ in range(2)
        ]
        for worker in workers:
            worker.start()
        results = sorted(queue.get(timeout=60) for _ in workers)
        for worker in workers:
            worker.join(timeout=30)
            assert worker.exitcode == 0
        assert results[0] == "created" and results[1].startswith("taken: An endpoint named")
        store = DeploymentStore(path)
        assert [e.name for e in store.list_endpoints()] == ["race"]
        assert len(store.get_keys("race").primary) >= 43
