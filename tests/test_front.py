"""An endpoint's front as its own process, before real Azure ML inference servers on 127.0.0.1.

Five servers are shared by the module: two serve the demo iris classifier with the no-code
script (blue, green), three serve a tiny script without a model that answers at once, sleeps,
or raises on request (toy, and two victims the health tests crash and freeze). Records are made
directly in a store of the test's own; the front reads them as it would the studio's.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from deploystudio import inference_server
from deploystudio.customization.scoring_script import (
    AZURE_MODEL_FOLDER,
    ScriptTemplate,
    example_request,
    generate_scoring_script,
)
from deploystudio.deployment.base import AuthMode, DeploymentState, Runtime
from deploystudio.deployment.local import upstream
from deploystudio.deployment.local.front_answers import with_input_data_hint
from deploystudio.deployment.local.health import HealthMonitor
from deploystudio.deployment.local.routing import DeploymentView, RoutingTable
from deploystudio.deployment.store import DeploymentStore
from deploystudio.prediction import local_model_path

ENDPOINT = "iris-front"
MAX_BODY = 64 * 1024
TOY_TIMEOUT_MS = 1000

TOY_SCRIPT = """
import json
import time

def init():
    pass

def run(raw_data):
    data = json.loads(raw_data)
    time.sleep(data.get("sleep", 0))
    if data.get("raise"):
        raise RuntimeError(data["raise"])
    return {"echo": data}
"""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self):
        return json.loads(self.body)


class Client:
    """HTTP/1.1 with keep-alive, so that a thousand requests cost no thousand connections."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body=None, headers=None) -> Answer:
        for attempt in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                self.conn.request(method, path, body=body, headers=headers or {})
                response = self.conn.getresponse()
                answer = Answer(
                    response.status,
                    {k.lower(): v for k, v in response.getheaders()},
                    response.read(),
                )
                if response.will_close:
                    self.close()
                return answer
            except (ConnectionError, http.client.HTTPException):
                self.close()  # the server closed an idle connection: open another once
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@dataclass
class Setup:
    store: DeploymentStore
    db: Path
    port: int
    front: subprocess.Popen
    front_log: Path
    servers: dict[str, inference_server.ServerHandle]
    body: dict
    client: Client

    @property
    def key(self) -> str:
        return self.store.get_keys(ENDPOINT).primary

    def score(self, body, key: str | None = "primary", headers=None) -> Answer:
        sent = dict(headers or {})
        if key == "primary":
            key = self.key
        if key is not None:
            sent["Authorization"] = f"Bearer {key}"
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent.setdefault("Content-Type", "application/json")
        return self.client.request("POST", "/score", data, sent)

    def metrics(self) -> dict:
        answer = self.client.request(
            "GET", "/_deploystudio/metrics", headers={"Authorization": f"Bearer {self.key}"}
        )
        assert answer.status == 200, answer
        return answer.json

    def apply_traffic(self, weights: dict[str, int], mirror=None) -> None:
        """Change the traffic in the store and wait until the front serves it."""
        self.store.set_traffic(ENDPOINT, weights, mirror=mirror)
        expected = self.store.get_endpoint(ENDPOINT)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            config = self.metrics()["config"]
            mirror_now = tuple(config["mirror"]) if config["mirror"] else None
            if config["traffic"] == expected.traffic and mirror_now == expected.mirror:
                return
            time.sleep(0.05)
        raise AssertionError(f"The front did not apply {weights} within 3 s")


def write_toy(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "score.py"
    script.write_text(textwrap.dedent(TOY_SCRIPT))
    return script


def start_front(db: Path, port: int, log: Path, *extra: str) -> subprocess.Popen:
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "deploystudio.deployment.local.front",
                "--db",
                str(db),
                "--endpoint",
                ENDPOINT,
                "--port",
                str(port),
                *extra,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as response:
                if response.status == 200:
                    return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError(f"The front did not start:\n{log.read_text()}")


@pytest.fixture(scope="module")
def setup(settings, registry, seeded, tmp_path_factory):
    root = tmp_path_factory.mktemp("front")
    iris = local_model_path("models:/iris-classifier/1", settings, registry)
    iris_script = root / "iris" / "score.py"
    iris_script.parent.mkdir()
    iris_script.write_text(generate_scoring_script(ScriptTemplate.NO_CODE, iris))
    iris_dir = inference_server.stage_model(iris, root / "models", folder_name=AZURE_MODEL_FOLDER)
    empty = root / "empty-model"
    empty.mkdir()
    (empty / "MLmodel").write_text("flavors: {}\n")
    toy_dir = inference_server.stage_model(empty, root / "toy-models")
    toy_script = write_toy(root / "toy")

    plan = {
        "blue": (iris_script, iris_dir),
        "green": (iris_script, iris_dir),
        "toy": (toy_script, toy_dir),
        "crashes": (toy_script, toy_dir),
        "freezes": (toy_script, toy_dir),
    }
    servers: dict[str, inference_server.ServerHandle] = {}
    front = None
    try:
        # All start at once and boot while the others do.
        for name, (script, model_dir) in plan.items():
            servers[name] = inference_server.start(script, model_dir, root / f"{name}.log")
        db = root / "deployments.db"
        store = DeploymentStore(db)
        store.create_endpoint(ENDPOINT)
        for name, handle in servers.items():
            settings_ = {"request_timeout_ms": TOY_TIMEOUT_MS} if name == "toy" else {}
            store.create_deployment(ENDPOINT, name, f"models:/{name}/1", settings=settings_)
            inference_server.wait_ready(handle, timeout_seconds=120)
            store.set_state(
                ENDPOINT,
                name,
                "starting",
                pid=handle.pid,
                port=handle.port,
                log_path=str(handle.log_path),
            )
            store.set_state(ENDPOINT, name, "ready")
        store.set_traffic(ENDPOINT, {"blue": 100})
        port = inference_server.free_port()
        front_log = root / "front.log"
        front = start_front(db, port, front_log, "--max-body-bytes", str(MAX_BODY))
        body = example_request(iris)
        client = Client(port)
        yield Setup(store, db, port, front, front_log, servers, body, client)
        client.close()
    finally:
        if front is not None:
            front.terminate()
            front.wait(10)
        for handle in servers.values():
            # A frozen server must run again to hear SIGTERM (stop() would SIGKILL it anyway).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(handle.pid, signal.SIGCONT)
        with ThreadPoolExecutor(len(servers) or 1) as pool:
            list(pool.map(lambda h: inference_server.stop(h, grace_seconds=1), servers.values()))


# -- auth ----------------------------------------------------------------------------------


def test_no_key_or_a_wrong_key_is_401(setup):
    for key in (None, "not-the-key"):
        answer = setup.score(setup.body, key=key)
        assert answer.status == 401
        assert "requires a key" in answer.json["message"]
        assert answer.headers["www-authenticate"] == "Bearer"
    # The metrics need the key too.
    assert setup.client.request("GET", "/_deploystudio/metrics").status == 401


def test_primary_and_secondary_keys_both_work(setup):
    keys = setup.store.get_keys(ENDPOINT)
    for key in (keys.primary, keys.secondary):
        answer = setup.score(setup.body, key=key)
        assert answer.status == 200, answer
        assert answer.headers["azureml-model-deployment"] == "blue"


def test_a_regenerated_key_works_within_a_second_and_the_old_one_is_refused(setup):
    old = setup.store.get_keys(ENDPOINT).secondary
    changed_at = time.monotonic()
    new = setup.store.regenerate_key(ENDPOINT, "secondary").secondary
    while setup.score(setup.body, key=new).status != 200:
        assert time.monotonic() - changed_at < 1.5, "the new key was not accepted within 1.5 s"
        time.sleep(0.05)
    assert setup.score(setup.body, key=old).status == 401
    assert "not-the-key" not in setup.front_log.read_text()
    assert new not in setup.front_log.read_text()  # keys never reach the log


# -- routing -------------------------------------------------------------------------------


def test_ninety_ten_split_over_a_thousand_requests(setup):
    setup.apply_traffic({"blue": 90, "green": 10})
    data = json.dumps(setup.body).encode()
    headers = {"Authorization": f"Bearer {setup.key}", "Content-Type": "application/json"}

    def send(count: int) -> list[Answer]:
        client = Client(setup.port)
        try:
            return [client.request("POST", "/score", data, headers) for _ in range(count)]
        finally:
            client.close()

    # Four callers at once: blue and green then score in parallel, as they would in use.
    with ThreadPoolExecutor(4) as pool:
        answers = [a for batch in pool.map(send, [250] * 4) for a in batch]
    assert len(answers) == 1000 and {a.status for a in answers} == {200}
    answered = Counter(a.headers["azureml-model-deployment"] for a in answers)
    assert set(answered) == {"blue", "green"}
    assert abs(answered["blue"] / 10 - 90) <= 4, answered
    assert abs(answered["green"] / 10 - 10) <= 4, answered


def test_the_header_reaches_a_deployment_without_traffic(setup):
    setup.apply_traffic({"blue": 100})
    for name in ("green", "GREEN", "toy"):
        answer = setup.score(
            setup.body if name != "toy" else {"hello": 1},
            headers={"azureml-model-deployment": name},
        )
        assert answer.status == 200, answer
        assert answer.headers["azureml-model-deployment"].lower() == name.lower()
    unknown = setup.score(setup.body, headers={"azureml-model-deployment": "purple"})
    assert unknown.status == 404
    assert "'purple'" in unknown.json["message"]


def test_answers_match_the_deployment_server_called_directly(setup):
    direct = inference_server.score(setup.servers["blue"], setup.body)
    answer = setup.score(setup.body, headers={"azureml-model-deployment": "blue"})
    assert (answer.status, answer.json) == direct
    assert answer.headers["content-type"] == "application/json"


def test_mirror_does_not_change_answers_and_the_mirror_counts_about_half(setup):
    setup.apply_traffic({"blue": 100})
    reference = [setup.score(setup.body) for _ in range(5)]
    before = setup.metrics()["deployments"]["green"]
    setup.apply_traffic({"blue": 100}, mirror=("green", 50))
    answers = [setup.score(setup.body) for _ in range(200)]
    deadline = time.monotonic() + 10
    while (metrics := setup.metrics())["mirror_in_flight"] and time.monotonic() < deadline:
        time.sleep(0.05)
    setup.apply_traffic({"blue": 100})

    assert {(a.status, a.body) for a in answers} == {(reference[0].status, reference[0].body)}
    assert {a.headers["azureml-model-deployment"] for a in answers} == {"blue"}
    green = metrics["deployments"]["green"]
    mirrored = green["mirrored"] - before["mirrored"]
    # Binomial(200, 0.5): 100 +- 7 at one standard deviation; +-35 is five of them.
    assert 65 <= mirrored <= 135, mirrored
    assert green["requests"] - before["requests"] == mirrored
    assert green["errors_4xx"] == before["errors_4xx"] and green["errors_5xx"] == 0
    assert green["latency_ms"]["p50"] > 0


def test_no_traffic_anywhere_is_404(setup):
    setup.apply_traffic({"blue": 0, "green": 0})
    try:
        answer = setup.score(setup.body)
        assert answer.status == 404
        assert "has traffic" in answer.json["message"]
        assert "azureml-model-deployment" not in answer.headers
    finally:
        setup.apply_traffic({"blue": 100})


# -- errors --------------------------------------------------------------------------------


def test_the_models_4xx_passes_through_unchanged(setup):
    bad = {"input_data": {"columns": ["not", "iris"], "data": [[1, 2]]}}
    direct = inference_server.score(setup.servers["blue"], bad)
    answer = setup.score(bad, headers={"azureml-model-deployment": "blue"})
    assert direct[0] == 400
    assert (answer.status, answer.json) == direct
    assert "missing inputs" in answer.json["message"]
    assert answer.headers["azureml-model-deployment"] == "blue"


def test_a_model_server_error_is_424_with_its_message(setup):
    answer = setup.score({"raise": "boom"}, headers={"azureml-model-deployment": "toy"})
    assert answer.status == 424
    assert "failed with status 500" in answer.json["message"]
    assert answer.json["model_status_code"] == 500
    assert answer.headers["ms-azureml-model-error-statuscode"] == "500"
    assert answer.headers["azureml-model-deployment"] == "toy"


def test_a_slow_deployment_is_408_after_its_own_timeout(setup):
    started = time.monotonic()
    answer = setup.score({"sleep": 2.5}, headers={"azureml-model-deployment": "toy"})
    took = time.monotonic() - started
    assert answer.status == 408
    assert f"{TOY_TIMEOUT_MS} ms" in answer.json["message"]
    assert answer.headers["azureml-model-deployment"] == "toy"
    assert TOY_TIMEOUT_MS / 1000 <= took < 2.0
    time.sleep(2.5 - took + 0.2)  # the toy server's one worker is still asleep: let it finish


def test_a_body_above_the_limit_is_413_with_or_without_a_length(setup):
    big = json.dumps({"input_data": ["x" * MAX_BODY]}).encode()
    auth = {"Authorization": f"Bearer {setup.key}", "Content-Type": "application/json"}
    with_length = Client(setup.port)
    chunked = Client(setup.port)
    try:
        answer = with_length.request("POST", "/score", big, auth)
        assert answer.status == 413
        assert f"{MAX_BODY:,} bytes" in answer.json["message"]
        pieces = iter([big[:1000], big[1000:]])
        chunked_answer = chunked.request("POST", "/score", pieces, {**auth})
        assert chunked_answer.status == 413
    finally:
        with_length.close()
        chunked.close()
    assert setup.score(setup.body).status == 200  # the limit is per request


def test_a_request_without_content_type_is_415_at_the_front(setup):
    """MLflow's scoring server answered such a request with a 500 (a 424 here)."""
    for headers in ({}, {"Content-Type": " "}):
        sent = {"Authorization": f"Bearer {setup.key}", **headers}
        answer = setup.client.request("POST", "/score", json.dumps(setup.body).encode(), sent)
        assert answer.status == 415, answer
        assert "Content-Type: application/json" in answer.json["message"]
        assert answer.headers["x-request-id"]


def test_mlflows_refusal_of_azures_input_data_says_which_runtime_reads_it(
    settings, registry, seeded
):
    """MLflow's scoring server (its own parsing, on the real iris model) says only "Received
    dictionary with input fields: []"; the front adds which runtime takes input_data."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc.scoring_server import invocations

    model = mlflow.pyfunc.load_model(
        local_model_path("models:/iris-classifier/1", settings, registry)
    )
    azure_body = json.dumps({"input_data": {"columns": ["a"], "data": [[1.0]]}})
    # The server's app answers such an exception with its serialize_as_json() and its status.
    with pytest.raises(MlflowException) as refused:
        invocations(azure_body, "application/json", model, None)
    assert refused.value.get_http_status_code() == 400
    answer = refused.value.serialize_as_json().encode()
    hinted = with_input_data_hint(answer, azure_body.encode())
    assert hinted is not None
    message = json.loads(hinted)["message"]
    assert "Received dictionary with input fields: []" in message
    assert "azureml runtime" in message and "dataframe_split" in message
    assert with_input_data_hint(answer, b'{"instances": [1]}') is None


def test_every_answer_carries_a_request_id(setup):
    given = setup.score(setup.body, headers={"x-request-id": "my-trace-123"})
    assert given.headers["x-request-id"] == "my-trace-123"
    fresh = {setup.score(setup.body).headers["x-request-id"] for _ in range(3)}
    assert len(fresh) == 3 and all(len(value) == 36 for value in fresh)  # uuid4 strings
    assert setup.score(setup.body, key=None).headers["x-request-id"]
    assert setup.client.request("GET", "/").headers["x-request-id"]
    assert setup.client.request("GET", "/nowhere").headers["x-request-id"]


def test_metrics_report_per_deployment_counters(setup):
    before = setup.metrics()
    bad = {"input_data": {"columns": ["not", "iris"], "data": [[1, 2]]}}
    assert setup.score(setup.body, headers={"azureml-model-deployment": "blue"}).status == 200
    assert setup.score(bad, headers={"azureml-model-deployment": "blue"}).status == 400
    assert setup.score(setup.body, key=None).status == 401
    assert setup.score(setup.body, headers={"azureml-model-deployment": "nope"}).status == 404
    raised = setup.score({"raise": "boom"}, headers={"azureml-model-deployment": "toy"})
    assert raised.status == 424
    after = setup.metrics()

    assert after["endpoint"] == ENDPOINT
    assert after["front"] == {"pid": setup.front.pid, "port": setup.port}
    assert after["config"]["traffic"]["blue"] == 100
    assert after["config"]["version"] >= before["config"]["version"]
    assert after["requests"] - before["requests"] == 5
    for status, more in {"401": 1, "404": 1, "424": 1, "408": 0, "413": 0, "503": 0}.items():
        assert after["front_errors"][status] - before["front_errors"][status] == more, status
    blue, blue_before = after["deployments"]["blue"], before["deployments"]["blue"]
    assert blue["requests"] - blue_before["requests"] == 2
    assert blue["errors_4xx"] - blue_before["errors_4xx"] == 1
    assert blue["statuses"]["400"] - blue_before["statuses"].get("400", 0) == 1
    assert blue["last_error"]["status"] == 400 and "missing inputs" in blue["last_error"]["message"]
    assert (blue["state"], blue["port"]) == ("ready", setup.servers["blue"].port)
    latency = blue["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] and latency["window"] >= 2
    assert blue["health"]["healthy"] is True
    toy, toy_before = after["deployments"]["toy"], before["deployments"]["toy"]
    assert toy["errors_5xx"] - toy_before["errors_5xx"] == 1
    assert toy["statuses"]["500"] - toy_before["statuses"].get("500", 0) == 1
    assert toy["last_error"]["request_id"] == raised.headers["x-request-id"]


# -- health --------------------------------------------------------------------------------


def test_crashed_and_frozen_servers_are_failed_within_ten_seconds(setup):
    crashes, freezes = setup.servers["crashes"], setup.servers["freezes"]
    os.kill(crashes.pid, signal.SIGKILL)  # the gunicorn master: kill -9
    os.killpg(freezes.pid, signal.SIGSTOP)  # alive, but answers nothing
    signalled = time.monotonic()
    failed_after: dict[str, float] = {}
    while len(failed_after) < 2 and time.monotonic() - signalled < 12:
        for name in ("crashes", "freezes"):
            if name not in failed_after and setup.store.get_deployment(ENDPOINT, name).state == (
                "failed"
            ):
                failed_after[name] = time.monotonic() - signalled
        time.sleep(0.1)
    assert set(failed_after) == {"crashes", "freezes"}, failed_after
    assert max(failed_after.values()) < 10, failed_after
    crashed = setup.store.get_deployment(ENDPOINT, "crashes")
    frozen = setup.store.get_deployment(ENDPOINT, "freezes")
    assert "exited" in crashed.reason
    assert "did not answer health checks" in frozen.reason
    assert crashed.log_tail.startswith("Server log")

    # Its share of the traffic gets 503 with the reason; the other deployment keeps serving.
    setup.apply_traffic({"blue": 50, "crashes": 50})
    try:
        answers = [setup.score(setup.body) for _ in range(60)]
    finally:
        setup.apply_traffic({"blue": 100})
    by_deployment = Counter((a.headers["azureml-model-deployment"], a.status) for a in answers)
    assert set(by_deployment) == {("blue", 200), ("crashes", 503)}, by_deployment
    refused = next(a for a in answers if a.status == 503)
    assert "failed" in refused.json["message"] and "exited" in refused.json["message"]
    direct = setup.score(setup.body, headers={"azureml-model-deployment": "freezes"})
    assert direct.status == 503 and "health checks" in direct.json["message"]


# -- the client to deployment servers, against a local aiohttp server --------------------


def upstream_run(call):
    """Serve /chunked, /slow and /drop on a local aiohttp server and run `call(port)`."""

    async def chunked(request):
        response = web.StreamResponse(headers={"X-Seen": request.headers.get("X-Custom", "")})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b'{"predictions": ', await request.read(), b"}"):
            await response.write(part)
        await response.write_eof()
        return response

    async def slow(request):
        await asyncio.sleep(2)
        return web.Response(text="late")

    async def drop(request):
        request.transport.close()  # no answer at all
        await asyncio.sleep(1)
        return web.Response(text="never sent")

    async def main():
        app = web.Application()
        app.router.add_post("/chunked", chunked)
        app.router.add_post("/slow", slow)
        app.router.add_post("/drop", drop)
        runner = web.AppRunner(app)
        await runner.setup()
        port = inference_server.free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            return await call(port)
        finally:
            await runner.cleanup()

    return asyncio.run(main())


def test_upstream_reads_a_chunked_answer_and_sends_the_callers_headers():
    answer = upstream_run(
        lambda port: upstream.post(port, "/chunked", b"[1, 2]", [(b"x-custom", b"yes")], 5)
    )
    assert answer.status == 200
    assert answer.body == b'{"predictions": [1, 2]}'
    assert (b"x-seen", b"yes") in answer.headers


def test_upstream_failures_are_a_timeout_or_an_upstream_error():
    with pytest.raises(TimeoutError):
        upstream_run(lambda port: upstream.post(port, "/slow", b"{}", [], 0.3))
    with pytest.raises(upstream.UpstreamError, match=r"closed the connection|broke off"):
        upstream_run(lambda port: upstream.post(port, "/drop", b"{}", [], 5))
    closed_port = inference_server.free_port()
    with pytest.raises(upstream.UpstreamError, match="cannot connect"):
        asyncio.run(upstream.post(closed_port, "/score", b"{}", [], 5))


# -- the health monitor in-process, against a real server whose probe answer can be withheld --


def monitor_run(scenario, state=DeploymentState.READY, pid=None, seconds=1.6):
    """Run HealthMonitor (scaled down: probes every 0.1 s, 0.2 s timeout, hung after 0.6 s)
    against a local aiohttp server; `scenario(monitor, server)` drives it while it watches.
    Returns the failures reported, with the seconds after start when each came."""

    async def main():
        server = {"hang": False}

        async def health(request):
            while server["hang"]:
                await asyncio.sleep(0.05)
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_get("/", health)
        runner = web.AppRunner(app)
        await runner.setup()
        port = inference_server.free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        view = DeploymentView("dep", state, None, Runtime.AZUREML, pid, port, None, 5.0)
        routing = RoutingTable("ep", AuthMode.NONE, {"dep": view}, {"dep": 100}, None)
        failures = []
        started = time.monotonic()

        async def on_failure(failed, problem):
            failures.append((round(time.monotonic() - started, 2), problem))

        async with aiohttp.ClientSession() as session:
            monitor = HealthMonitor(
                session, on_failure, interval=0.1, probe_timeout=0.2, hung_after=0.6
            )
            monitor.update(routing)
            with contextlib.suppress(TimeoutError):  # scenarios run until `seconds` is up
                await asyncio.wait_for(scenario(monitor, server), seconds)
            server["hang"] = False
            await monitor.close()
        await runner.cleanup()
        return failures

    return asyncio.run(main())


async def hang_forever(monitor, server):
    server["hang"] = True
    await asyncio.sleep(10)


def test_monitor_reports_a_silent_server_once_after_the_hung_delay():
    failures = monitor_run(hang_forever)
    assert len(failures) == 1, failures
    after, problem = failures[0]
    assert 0.6 <= after < 1.3
    assert "did not answer health checks" in problem


def test_monitor_leaves_answering_and_starting_servers_alone():
    async def answer(monitor, server):
        await asyncio.sleep(10)

    assert monitor_run(answer) == []
    assert monitor_run(hang_forever, state=DeploymentState.STARTING) == []


def test_busy_is_not_hung_while_a_request_is_within_its_timeout():
    async def busy(monitor, server):
        server["hang"] = True
        monitor.begin("dep", timeout=5.0)  # one long scoring request in flight
        await asyncio.sleep(1.2)
        monitor.end("dep", answered=False)  # ... that ended without an answer
        await asyncio.sleep(10)

    failures = monitor_run(busy, seconds=2.4)
    assert len(failures) == 1 and failures[0][0] >= 1.2, failures


def test_scoring_answers_count_as_signs_of_life():
    async def scoring(monitor, server):
        server["hang"] = True
        for _ in range(30):
            monitor.begin("dep", timeout=5.0)
            await asyncio.sleep(0.05)
            monitor.end("dep", answered=True)

    assert monitor_run(scoring) == []


def test_monitor_reports_a_dead_process_at_once():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    failures = monitor_run(lambda monitor, server: asyncio.sleep(10), pid=child.pid)
    assert len(failures) == 1 and failures[0][0] < 0.3, failures
    assert f"(pid {child.pid}) exited" in failures[0][1]


# -- process -------------------------------------------------------------------------------


def test_sigterm_lets_a_request_in_flight_finish_then_exits_0(setup, tmp_path):
    port = inference_server.free_port()
    log = tmp_path / "second-front.log"
    front = start_front(setup.db, port, log)
    client = Client(port)
    answers: list[Answer] = []
    slow = threading.Thread(
        target=lambda: answers.append(
            client.request(
                "POST",
                "/score",
                json.dumps({"sleep": 0.5}).encode(),
                {
                    "Authorization": f"Bearer {setup.key}",
                    "azureml-model-deployment": "toy",
                    "Content-Type": "application/json",
                },
            )
        )
    )
    try:
        slow.start()
        time.sleep(0.2)
        front.send_signal(signal.SIGTERM)
        assert front.wait(10) == 0, log.read_text()
        slow.join(10)
    finally:
        client.close()
        if front.poll() is None:
            front.kill()
    assert [a.status for a in answers] == [200], log.read_text()
    assert answers[0].json == {"echo": {"sleep": 0.5}}
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)


def test_the_front_listens_on_loopback_only(setup, tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "deploystudio.deployment.local.front",
            "--db",
            str(setup.db),
            "--endpoint",
            ENDPOINT,
            "--port",
            str(inference_server.free_port()),
            "--host",
            "0.0.0.0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "only listens on this machine" in done.stderr
