"""Team-server guarantees on the pages, through AppTest: sign-in when configured, roles that the
pages enforce (disabled with a reason, and refused on the server), changes signed with the
signed-in user, keys never on a page unless revealed, and a banner (not a hung page) when the
MLflow server is unreachable or silent.

AppTest 1.67 can seed `st.user` (`at.user`) and `st.secrets` (`at.secrets`); the app reads
the `[auth]` section and the roles table from `st.secrets`, so both are set the way a team
server's secrets.toml would set them.

One real endpoint with key auth and one deployment of the demo iris classifier on 127.0.0.1,
made through the domain in a module fixture.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator

import pytest
from streamlit.testing.v1 import AppTest

from components import endpoint_changes, services
from components.endpoint_keys import reveal_key
from components.traffic_editor import editor_key
from deploystudio.deployment.base import DeploymentState
from deploystudio.deployment.local.processes import our_processes
from deploystudio.deployment.local.target import LocalTarget
from tests.conftest import REPO_ROOT, settings_for
from tests.page_support import (  # noqa: F401 (fixtures)
    fresh_caches,
    pages_using,
    prediction_worker_stopped_at_the_end,
    rerun,
)
from tests.reliability.figures import FIGURES

APP = str(REPO_ROOT / "app.py")
ENDPOINTS = "views/endpoints.py"
DEPLOY = "views/deploy.py"
ENDPOINT = "access-ep"
TIMEOUT = 120
SCAN_SUITE = "page text scan"
TABS = ("Deployments", "Traffic", "Safe rollout", "Metrics", "Invoke", "Keys", "History")
# What a team server's secrets.toml holds: Streamlit's OIDC section and the roles table.
AUTH = {
    "redirect_uri": "http://localhost:8501/oauth2callback",
    "cookie_secret": "test-cookie-secret",
    "client_id": "deploy-studio",
    "client_secret": "test-client-secret",
    "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration",
}
ROLES = {"default": "viewer", "ana@example.com": "deployer", "builder": ["bob@example.com"]}
TEAM_SECRETS = {"auth": AUTH, "deploystudio": {"roles": ROLES}}


@pytest.fixture(scope="module")
def home(tmp_path_factory, settings, seeded):
    home = tmp_path_factory.mktemp("access-pages")
    with pages_using(home, settings):
        yield home


@pytest.fixture(scope="module")
def target(home, settings, registry) -> Iterator[LocalTarget]:
    local = settings_for(home, MLFLOW_TRACKING_URI=settings.tracking_uri)
    target = LocalTarget(local, registry=registry, start_timeout_seconds=TIMEOUT)
    try:
        assert target.create_endpoint(ENDPOINT).state is DeploymentState.READY
        record = target.create_deployment("blue", "models:/iris-classifier/1", ENDPOINT)
        assert record.state is DeploymentState.READY, (record.reason, record.log_tail)
        target.update_endpoint(ENDPOINT, {"traffic": {"blue": 100}})
        yield target
    finally:
        services.local_endpoints().operations.shutdown()
        services._local_endpoints.clear()
        target.stop_all()
        leftovers = list(our_processes(home))
        for process in leftovers:  # never leave a process behind, even when a test failed
            os.killpg(process.pid, signal.SIGKILL)
        assert not leftovers, f"processes left running: {leftovers}"


def open_page(
    page: str, user: dict | None = None, secrets: dict | None = None, **params: str
) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page(page)
    if user is not None:
        at.user = user
    if secrets is not None:
        at.secrets.update(secrets)
    for name, value in params.items():
        at.query_params[name] = value
    return rerun(at)


def signed_in(email: str) -> dict:
    return {"is_logged_in": True, "email": email, "name": email.split("@")[0]}


def rendered_text(at: AppTest) -> str:
    """Everything the page sent to the browser: every element's message, widgets' labels,
    values and tooltips included, tables as their bytes."""
    parts: list[str] = []

    def walk(node) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None:
            parts.append(str(proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return "\n".join(parts)


def key_values(target: LocalTarget) -> tuple[str, str]:
    keys = target.get_keys(ENDPOINT)
    return keys.primary, keys.secondary


# -- sign-in --------------------------------------------------------------------------------


def test_with_auth_configured_nothing_shows_until_the_user_signs_in(home):
    at = open_page(ENDPOINTS, user={"is_logged_in": False}, secrets=TEAM_SECRETS)
    assert [b.label for b in at.button] == ["Sign in"]
    assert "Endpoints" not in [t.value for t in at.title]
    assert ENDPOINT not in rendered_text(at)


def test_without_auth_the_local_user_works_as_before_and_may_change_everything(target):
    at = open_page(ENDPOINTS, endpoint=ENDPOINT, tab="Keys")
    assert "Endpoints" in [t.value for t in at.title]
    assert not at.toggle(key=reveal_key(ENDPOINT)).disabled
    assert "Sign in" not in [b.label for b in at.button]


# -- roles ----------------------------------------------------------------------------------


def test_a_viewer_sees_changes_disabled_with_the_role_needed_and_the_server_refuses_them(target):
    viewer = signed_in("val@example.com")
    at = open_page(ENDPOINTS, user=viewer, secrets=TEAM_SECRETS, endpoint=ENDPOINT, tab="Traffic")
    assert "Signed in as **val@example.com** · role **viewer**" in [c.value for c in at.caption]
    apply_key = f"{editor_key(target.get_endpoint(ENDPOINT))}_apply"
    apply = at.button(key=apply_key)
    assert apply.disabled
    assert "You need the deployer role to change endpoints" in apply.help

    # A forged click on the disabled button (AppTest's `.click()` refuses a disabled widget,
    # so its trigger value is set directly) is dropped: Streamlit 1.67 discards values sent
    # for disabled widgets. Nothing starts and the history does not move.
    history_before = len(target.store.history(ENDPOINT))
    apply._value = True
    rerun(at)
    assert endpoint_changes.slot(ENDPOINT) not in at.session_state
    assert len(target.store.history(ENDPOINT)) == history_before
    assert target.get_endpoint(ENDPOINT).traffic == {"blue": 100}

    # The key toggle is disabled too, and a toggle forced on shows no key.
    keys_at = open_page(ENDPOINTS, user=viewer, secrets=TEAM_SECRETS, endpoint=ENDPOINT, tab="Keys")
    toggle = keys_at.toggle(key=reveal_key(ENDPOINT))
    assert toggle.disabled and "deployer role to see endpoint keys" in toggle.help
    keys_at.session_state[reveal_key(ENDPOINT)] = True
    rerun(keys_at)
    assert keys_at.toggle(key=reveal_key(ENDPOINT)).value  # on, yet nothing is shown
    text = rendered_text(keys_at)
    assert not any(key in text for key in key_values(target))


def _start_a_change() -> None:
    """A page that starts an endpoint change without drawing any button for it."""
    from components.operation_status import start_operation
    from deploystudio.access import Action

    start_operation(
        "forged_slot",
        "endpoint access-ep",
        "Forged change",
        lambda _: "ran",
        Action.CHANGE_ENDPOINT,
    )


def test_the_server_refuses_a_change_whatever_the_page_drew(target):
    at = AppTest.from_function(_start_a_change, default_timeout=TIMEOUT)
    at.user = signed_in("bob@example.com")
    at.secrets.update(TEAM_SECRETS)
    rerun(at)
    assert [e.value for e in at.error] == [
        "You need the deployer role to change endpoints (traffic, keys, restarts, deletions); "
        "bob@example.com is a builder. Ask whoever runs this server to give you that role in "
        "[deploystudio.roles] of .streamlit/secrets.toml."
    ]
    assert "forged_slot" not in at.session_state
    assert services.local_endpoints().operations.running("endpoint access-ep") == []


def test_a_builder_may_not_deploy(target):
    at = open_page(
        DEPLOY,
        user=signed_in("bob@example.com"),
        secrets=TEAM_SECRETS,
        model="iris-classifier",
        version="1",
    )
    deploy = at.button(key="deploy_submit")
    assert deploy.disabled and "You need the deployer role to deploy models" in deploy.help
    assert "bob@example.com is a builder" in deploy.help


def test_a_deployers_change_runs_and_its_history_names_them(target):
    ana = signed_in("ana@example.com")
    at = open_page(ENDPOINTS, user=ana, secrets=TEAM_SECRETS, endpoint=ENDPOINT, tab="Keys")
    before = key_values(target)
    prefix = f"keys_{ENDPOINT}"
    at.radio(key=f"{prefix}_which").set_value("secondary")
    rerun(at)
    at.checkbox(key=f"{prefix}_confirm").check()
    rerun(at)
    regenerate = at.button(key=f"{prefix}_regenerate")
    assert not regenerate.disabled
    regenerate.click()
    rerun(at)
    operation_id = at.session_state[endpoint_changes.slot(ENDPOINT)]
    operation = services.local_endpoints().operations.wait(operation_id, TIMEOUT)
    assert operation.done and operation.error is None, operation.error
    assert operation.actor == "ana@example.com"
    after = key_values(target)
    assert after[0] == before[0] and after[1] != before[1]
    entry = target.store.history(ENDPOINT, limit=1)[0]
    assert (entry.action, entry.field, entry.actor) == (
        "regenerate_key",
        "secondary_key",
        "ana@example.com",
    )
    history = open_page(ENDPOINTS, user=ana, secrets=TEAM_SECRETS, endpoint=ENDPOINT, tab="History")
    table = next(d.value for d in history.dataframe if "who" in d.value.columns)
    assert table["who"].iloc[0] == "ana@example.com"


def test_a_wrong_roles_table_stops_the_app_with_what_to_fix(home):
    secrets = {"auth": AUTH, "deploystudio": {"roles": {"ana@example.com": "admin"}}}
    at = open_page(ENDPOINTS, user=signed_in("ana@example.com"), secrets=secrets)
    assert [e.value for e in at.error] == [
        "[deploystudio.roles]: 'ana@example.com' has role 'admin'; use one of viewer, "
        "builder, deployer."
    ]
    assert not at.title


# -- keys on pages --------------------------------------------------------------------------


def test_no_key_is_on_any_tab_or_the_deploy_page_unless_revealed(target):
    keys = key_values(target)
    pages = [open_page(ENDPOINTS, endpoint=ENDPOINT, tab=tab) for tab in TABS]
    pages.append(
        open_page(
            DEPLOY,
            model="iris-classifier",
            version="1",
            endpoint=ENDPOINT,
            deployment="blue",
        )
    )
    FIGURES.measured(SCAN_SUITE, "cases tried", "secret hits")
    hits = []
    for at in pages:
        text = rendered_text(at)
        assert ENDPOINT in text  # the scan reads the page
        FIGURES.add(SCAN_SUITE, "cases tried")
        hits += [(dict(at.query_params), k[:4] + "...") for k in keys if k in text]
    FIGURES.add(SCAN_SUITE, "secret hits", len(hits))
    assert not hits
    # Revealed on purpose, the keys are there: the scan would see them.
    at = open_page(ENDPOINTS, endpoint=ENDPOINT, tab="Keys")
    at.toggle(key=reveal_key(ENDPOINT)).set_value(True)
    rerun(at)
    assert all(k in rendered_text(at) for k in keys)


# -- MLflow down ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def browse_with(tracking_uri: str, monkeypatch) -> tuple[AppTest, float]:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    started = time.monotonic()
    at = open_page("views/browse.py")
    return at, time.monotonic() - started


def test_an_unreachable_mlflow_server_gives_a_banner_at_once(home, monkeypatch):
    uri = f"http://127.0.0.1:{free_port()}"
    at, seconds = browse_with(uri, monkeypatch)
    assert seconds < 20
    [banner] = at.error
    assert f"The MLflow registry at {uri} did not answer" in banner.value
    assert "Check that the server is running and that MLFLOW_TRACKING_URI is right" in banner.value


def test_a_server_that_never_answers_gives_a_banner_within_the_request_timeout(home, monkeypatch):
    # A real listener on loopback that accepts connections and never replies.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        at, seconds = browse_with(uri, monkeypatch)
    # The registry bounds MLflow's HTTP client (timeout per try, tries); the page answers then.
    timeout = float(os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"])
    tries = 1 + int(os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"])
    assert seconds < timeout * tries + 5
    [banner] = at.error
    assert f"The MLflow registry at {uri} did not answer" in banner.value
