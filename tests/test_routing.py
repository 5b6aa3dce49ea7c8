"""The front's decisions without sockets: auth, routing, mirror, timeouts, counters, health."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from deploystudio.deployment.base import AuthMode, DeploymentState, Runtime
from deploystudio.deployment.local.health import log_tail, process_alive
from deploystudio.deployment.local.metrics import (
    DeploymentCounters,
    FrontMetrics,
    LatencyWindow,
    percentiles,
)
from deploystudio.deployment.local.routing import (
    DEFAULT_REQUEST_TIMEOUT_MS,
    DeploymentView,
    RoutingTable,
    build_table,
    is_authorized,
    request_timeout_seconds,
    route,
)
from deploystudio.deployment.store import DeploymentStore

READY = DeploymentState.READY


def view(name: str, state: DeploymentState = READY, reason: str | None = None, port: int = 9000):
    return DeploymentView(
        name=name,
        state=state,
        reason=reason,
        runtime=Runtime.AZUREML,
        pid=None,
        port=port,
        log_path=None,
        timeout_seconds=5.0,
    )


def table(
    weights: dict[str, int],
    views: list[DeploymentView] | None = None,
    mirror: tuple[str, int] | None = None,
    auth: AuthMode = AuthMode.KEY,
    keys: tuple[bytes, ...] = (b"primary-key", b"secondary-key"),
) -> RoutingTable:
    views = views if views is not None else [view(name) for name in weights]
    return RoutingTable(
        endpoint="ep",
        auth_mode=auth,
        deployments={v.name.lower(): v for v in views},
        weights=weights,
        mirror=mirror,
        keys=keys,
    )


# -- auth --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "allowed"),
    [
        ("Bearer primary-key", True),
        ("Bearer secondary-key", True),
        ("bearer primary-key", True),  # the scheme is case-insensitive (RFC 9110)
        ("Bearer  primary-key ", True),
        ("Bearer primary-ke", False),
        ("Bearer primary-key-and-more", False),
        ("Basic primary-key", False),
        ("primary-key", False),
        ("Bearer ", False),
        ("", False),
        (None, False),
    ],
)
def test_key_auth_accepts_either_key_only(header, allowed):
    assert is_authorized(table({"blue": 100}), header) is allowed


def test_endpoint_without_key_auth_admits_everyone_and_key_mode_without_keys_nobody():
    assert is_authorized(table({"blue": 100}, auth=AuthMode.NONE, keys=()), None)
    assert not is_authorized(table({"blue": 100}, keys=()), "Bearer anything")


def test_table_repr_never_shows_keys():
    assert "primary-key" not in repr(table({"blue": 100}))
    assert "primary-key" not in str(table({"blue": 100}).describe())


# -- routing -------------------------------------------------------------------------------


def test_weights_split_traffic_in_proportion():
    rng = random.Random(7)
    routing = table({"blue": 90, "green": 10})
    chosen = Counter(route(routing, None, rng).deployment.name for _ in range(20_000))
    assert chosen["blue"] / 20_000 == pytest.approx(0.9, abs=0.01)
    assert chosen["green"] / 20_000 == pytest.approx(0.1, abs=0.01)


def test_zero_weight_never_gets_live_traffic_but_the_header_reaches_it():
    rng = random.Random(1)
    routing = table({"blue": 100, "green": 0})
    assert {route(routing, None, rng).deployment.name for _ in range(500)} == {"blue"}
    direct = route(routing, "GREEN", rng)  # names ignore case, as in the store
    assert direct.ok and direct.deployment.name == "green"


def test_unknown_deployment_in_the_header_is_404_naming_the_known_ones():
    decision = route(table({"blue": 100, "green": 0}), "purple", random.Random())
    assert decision.status == 404
    assert "'purple'" in decision.message and "'blue', 'green'" in decision.message
    assert decision.deployment is None


def test_no_traffic_anywhere_is_404():
    for weights in ({"blue": 0, "green": 0}, {}):
        decision = route(table(weights), None, random.Random())
        assert decision.status == 404
        assert "No deployment" in decision.message and "has traffic" in decision.message


def test_chosen_deployment_that_is_not_ready_is_503_with_state_and_reason():
    failed = view("blue", DeploymentState.FAILED, "The server process (pid 12) exited.")
    decision = route(table({"blue": 100}, [failed]), None, random.Random())
    assert decision.status == 503
    assert decision.deployment.name == "blue"
    assert "failed" in decision.message and "pid 12" in decision.message
    assert "Restart it" in decision.message
    starting = view("blue", DeploymentState.STARTING)
    decision = route(table({"blue": 100}, [starting]), "blue", random.Random())
    assert decision.status == 503 and "starting" in decision.message


def test_mirror_copies_about_its_percentage_of_live_requests_only():
    rng = random.Random(3)
    routing = table({"blue": 100, "green": 0}, mirror=("green", 30))
    decisions = [route(routing, None, rng) for _ in range(10_000)]
    mirrored = sum(d.mirror is not None for d in decisions)
    assert mirrored / 10_000 == pytest.approx(0.30, abs=0.02)
    assert {d.deployment.name for d in decisions} == {"blue"}  # the answer still comes from blue
    assert {d.mirror.name for d in decisions if d.mirror} == {"green"}
    # Requests that name a deployment are never mirrored (Azure's rule).
    assert all(route(routing, "blue", rng).mirror is None for _ in range(1_000))


def test_no_mirror_when_not_ready_target_or_mirror_is_the_chosen_one():
    rng = random.Random(5)
    routing = table({"blue": 100, "green": 0}, mirror=("blue", 50))
    assert all(route(routing, None, rng).mirror is None for _ in range(200))
    failed_blue = table(
        {"blue": 100, "green": 0},
        [view("blue", DeploymentState.FAILED, "x"), view("green")],
        mirror=("green", 50),
    )
    assert all(route(failed_blue, None, rng).mirror is None for _ in range(200))


# -- table from store records --------------------------------------------------------------


def test_table_from_the_store_carries_weights_mirror_keys_and_timeouts(tmp_path):
    store = DeploymentStore(tmp_path / "d.db")
    store.create_endpoint("shop")
    store.create_deployment("shop", "blue", "models:/m/1", settings={"request_timeout_ms": 1500})
    store.create_deployment(
        "shop",
        "green",
        "models:/m/2",
        runtime="mlflow",
        settings={"request_settings": {"request_timeout_ms": 250}},
    )
    store.set_state("shop", "blue", "starting", pid=10, port=8001, log_path="/tmp/blue.log")
    store.set_state("shop", "blue", "ready")
    store.set_traffic("shop", {"blue": 100}, mirror=("green", 20))
    keys = store.get_keys("shop")

    built = build_table(store.get_endpoint("shop"), store.list_deployments("shop"), keys)

    assert built.weights == {"blue": 100, "green": 0}
    assert built.mirror == ("green", 20)
    assert is_authorized(built, f"Bearer {keys.secondary}")
    blue, green = built.find("BLUE"), built.find("green")
    assert (blue.ready, blue.port, blue.pid, blue.timeout_seconds) == (True, 8001, 10, 1.5)
    assert blue.score_path == "/score" and blue.health_url == "http://127.0.0.1:8001/"
    assert (green.ready, green.state, green.timeout_seconds) == (False, "pending", 0.25)
    assert green.score_path == "/invocations" and green.health_url.endswith("/ping")


@pytest.mark.parametrize(
    ("settings", "seconds"),
    [
        ({}, DEFAULT_REQUEST_TIMEOUT_MS / 1000),
        ({"request_timeout_ms": 90_000}, 90.0),
        ({"request_settings": {"request_timeout_ms": 200}}, 0.2),
        ({"request_timeout_ms": 0}, 5.0),
        ({"request_timeout_ms": 180_001}, 5.0),
        ({"request_timeout_ms": True}, 5.0),
        ({"request_timeout_ms": "3000"}, 5.0),
        ({"request_settings": "fast"}, 5.0),
    ],
)
def test_request_timeout_follows_azure_names_and_default(settings, seconds):
    assert request_timeout_seconds(settings) == seconds


# -- counters and percentiles ----------------------------------------------------------------


def test_percentiles_of_known_samples():
    # Linear interpolation between closest ranks: p50 of 1..100 is 50.5, p90 90.1, p99 99.01.
    assert percentiles([float(v) for v in range(1, 101)]) == {
        "p50": 50.5,
        "p90": 90.1,
        "p99": 99.01,
    }
    assert percentiles([7.0]) == {"p50": 7.0, "p90": 7.0, "p99": 7.0}
    assert percentiles([]) == {"p50": None, "p90": None, "p99": None}


def test_latency_window_keeps_the_latest_requests_and_drops_old_ones():
    window = LatencyWindow(max_requests=3, max_age_seconds=60)
    for i, latency in enumerate([1.0, 2.0, 3.0, 4.0]):
        window.add(latency, now=100.0 + i)
    assert window.values(now=104.0) == [2.0, 3.0, 4.0]
    assert window.values(now=162.5) == [4.0]  # 2.0 and 3.0 are more than 60 s old
    assert window.values(now=500.0) == []


def test_counters_separate_client_and_server_errors_and_count_mirrors():
    counters = DeploymentCounters()
    counters.record(200, 3.0)
    counters.record(400, 2.0, message="missing inputs ['x']", request_id="r1")
    counters.record(500, 4.0, message="boom")
    counters.record(408, 400.0, server_failed=True, message="late")
    counters.record(503, None, server_failed=True, mirrored=True, message="not ready")
    snap = counters.snapshot()
    assert (snap["requests"], snap["mirrored"]) == (5, 1)
    assert (snap["errors_4xx"], snap["errors_5xx"]) == (1, 3)
    assert snap["statuses"] == {"200": 1, "400": 1, "408": 1, "500": 1, "503": 1}
    assert snap["latency_ms"]["window"] == 4  # nothing was sent for the 503
    assert snap["latency_ms"]["p50"] == pytest.approx(3.5)
    assert snap["last_error"]["status"] == 503 and snap["last_error"]["mirrored"] is True


def test_front_metrics_list_every_deployment_and_the_front_statuses():
    metrics = FrontMetrics()
    metrics.deployment("blue").record(200, 1.0)
    metrics.front_error(401)
    metrics.front_error(401)
    snap = metrics.snapshot(["blue", "green"])
    assert snap["deployments"]["green"]["requests"] == 0
    assert snap["deployments"]["blue"]["requests"] == 1
    assert snap["front_errors"] == {"401": 2, "404": 0, "408": 0, "413": 0, "424": 0, "503": 0}


# -- health helpers --------------------------------------------------------------------------


def _proc_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]


def test_process_alive_tells_running_zombie_and_reaped_processes_apart():
    assert process_alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert process_alive(child.pid)
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while _proc_state(child.pid) != "Z" and time.monotonic() < deadline:
            time.sleep(0.01)
        # Dead but not reaped: a zombie, which os.kill(pid, 0) alone would call alive.
        os.kill(child.pid, 0)
        assert not process_alive(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not process_alive(child.pid)


def test_log_tail_gives_the_last_lines(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    tail = log_tail(log, lines=3)
    assert tail == "Server log (last lines):\nline 97\nline 98\nline 99"
    assert log_tail(tmp_path / "missing.log") == "(no server log)"
