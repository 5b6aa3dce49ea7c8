"""A real `streamlit run studio.py` on a free loopback port, and a real Chromium to drive it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import expect

from deploystudio.config import Settings
from deploystudio.deployment.base import DeploymentState
from deploystudio.deployment.local.target import LocalTarget
from deploystudio.registry import Registry
from tests.conftest import REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
STARTUP_TIMEOUT_SECONDS = 90
# A page's first load (the app opens the registry and the store) on a loaded machine.
LOAD_TIMEOUT_MS = 60_000
# Starting an endpoint's front and model servers on a busy 2-core machine.
START_TIMEOUT_SECONDS = 180
IRIS_BLUE_GREEN = {"blue": "models:/iris-classifier/1", "green": "models:/iris-classifier/2"}
# Playwright's 5 s default for `expect` is too short on a loaded 2-core CI machine: the data
# grid's script loads lazily the first time a page shows a table, and once took longer than
# 5 s after the heading above it appeared. Waiting longer costs nothing when things are fast.
EXPECT_TIMEOUT_MS = 20_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser tests: install Debian's chromium package.")
        pytest.skip("Chromium is not installed (apt-get install chromium); browser tests skipped.")
    return CHROMIUM


@contextmanager
def running_app(
    home: Path, log_dir: Path, extra_env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """`streamlit run studio.py` (what `make run` starts: app.py behind the Host allow list) on a
    free loopback port against `home`, with `extra_env` added to its environment; yields its
    URL."""
    port = free_port()
    log_path = log_dir / "streamlit.log"
    env = {**os.environ, "DEPLOYSTUDIO_HOME": str(home), **(extra_env or {})}
    env.pop("MLFLOW_TRACKING_URI", None)
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                "studio.py",
                "--server.port",
                str(port),
                "--server.address",
                "127.0.0.1",
                "--server.headless",
                "true",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Streamlit did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


@contextmanager
def endpoint_made(
    settings: Settings,
    registry: Registry,
    endpoint: str,
    traffic: Mapping[str, int],
    deployments: Mapping[str, str] = IRIS_BLUE_GREEN,
) -> Iterator[LocalTarget]:
    """An endpoint made through the domain with `deployments` (name -> model URI), each ready,
    and `traffic` (no mirror); deleted afterwards whatever happened. Journeys start from it."""
    target = LocalTarget(settings, registry=registry, start_timeout_seconds=START_TIMEOUT_SECONDS)
    try:
        assert target.create_endpoint(endpoint).state is DeploymentState.READY
        for name, uri in deployments.items():
            record = target.create_deployment(name, uri, endpoint)
            assert record.state is DeploymentState.READY, (record.reason, record.log_tail)
        target.update_endpoint(endpoint, {"traffic": dict(traffic), "mirror": None})
        yield target
    finally:
        target.delete_endpoint(endpoint)


def open_endpoint(page, app_url: str, endpoint: str, tab: str, query: str = "") -> None:
    """The Endpoints page on `endpoint` and `tab` ("Safe rollout" may be given as is)."""
    page.goto(f"{app_url}/endpoints?endpoint={endpoint}&tab={tab.replace(' ', '+')}{query}")
    expect(page.get_by_role("heading", name=endpoint)).to_be_visible(timeout=LOAD_TIMEOUT_MS)


@pytest.fixture(scope="session")
def app_url(studio_home: Path, seeded, tmp_path_factory) -> Iterator[str]:
    with running_app(studio_home, tmp_path_factory.mktemp("streamlit")) as url:
        yield url


@pytest.fixture
def fresh_app_url(studio_home: Path, seeded, tmp_path: Path) -> Iterator[str]:
    """A server nobody has visited yet: its first session is the one under test."""
    with running_app(studio_home, tmp_path) as url:
        yield url


expect.set_options(timeout=EXPECT_TIMEOUT_MS)


@pytest.fixture
def page(chromium_path: Path, tmp_path: Path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium_path), headless=True, args=CHROMIUM_ARGS
        )
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        browser_page = context.new_page()
        try:
            yield browser_page
        finally:
            # Keep what the browser showed last, for whoever reads a failure.
            browser_page.screenshot(path=str(tmp_path / "last.png"), full_page=True)
            browser.close()
