"""Screenshots of the main pages for the README, taken from the running app in Chromium.

Starts `streamlit run studio.py` (what `make run` serves) on a fresh data folder seeded with the
demo models and one endpoint (blue 80% / green 20%, the demo classifier's two versions), then
saves docs/screenshots/{overview,browse,inspect,predict,endpoints}.png from Debian's Chromium.
Run it again after a change to a page so that the README shows what the app shows:

    .venv/bin/python bench/screenshots.py [--out docs/screenshots] [--no-endpoint]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

from browser import REPO_ROOT, chromium, start_app, stop, wait_for_app

from deploystudio.config import load_settings
from deploystudio.demo import seed_demo
from deploystudio.deployment.base import DeploymentState
from deploystudio.deployment.local.target import LocalTarget
from deploystudio.registry import Registry

ENDPOINT = "iris-live"
TIMEOUT_MS = 90_000
# A laptop-sized window: the pages' upper part, where a reader looks first, at a readable size.
VIEWPORT = {"width": 1280, "height": 860}
VERSION = "model=iris-classifier&version=1"


def settle(page) -> None:
    """Wait until the app's script has finished and nothing on screen is stale."""
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for(
        timeout=TIMEOUT_MS
    )
    page.wait_for_function("!document.querySelector('[data-stale=\"true\"]')", timeout=TIMEOUT_MS)
    # Charts and tables load their code lazily and show a skeleton until then (seconds on a
    # loaded machine); then Plotly draws.
    page.wait_for_function(
        '!document.querySelector(\'[data-testid="stMain"] [data-testid*="Skeleton"]\')'
        " && [...document.querySelectorAll('[data-testid=\"stPlotlyChart\"]')]"
        ".every(c => c.querySelector('.main-svg'))",
        timeout=TIMEOUT_MS,
    )
    page.wait_for_timeout(800)  # the data grid paints its canvas a moment later


def heading(name: str):
    """Waits for the page's heading `name`."""
    return lambda page: page.get_by_role("heading", name=name, exact=True).wait_for(
        timeout=TIMEOUT_MS
    )


def shoot(page, url: str, path: Path, ready) -> None:
    page.goto(url)
    ready(page)
    settle(page)
    page.screenshot(path=str(path))
    print(f"{path} ({path.stat().st_size // 1024} KB)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "screenshots")
    parser.add_argument("--no-endpoint", action="store_true", help="skip the demo endpoint")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="ds-screens-") as tmp:
        home = Path(tmp) / "home"
        settings = load_settings(environ={"DEPLOYSTUDIO_HOME": str(home)})
        registry = Registry(settings.tracking_uri, settings.registry_uri)
        seed_demo(settings, registry)
        target = LocalTarget(settings, registry=registry, start_timeout_seconds=180)
        if not args.no_endpoint:
            if target.create_endpoint(ENDPOINT).state is not DeploymentState.READY:
                raise SystemExit(f"The front of {ENDPOINT} did not start")
            for name, uri in (
                ("blue", "models:/iris-classifier/1"),
                ("green", "models:/iris-classifier/2"),
            ):
                record = target.create_deployment(name, uri, ENDPOINT)
                if record.state is not DeploymentState.READY:
                    raise SystemExit(f"{name} did not start: {record.reason}")
            target.update_endpoint(ENDPOINT, {"traffic": {"blue": 80, "green": 20}})
        log = Path(tmp) / "streamlit.log"
        process, url = start_app(home, log)
        try:
            wait_for_app(process, url, log)
            with chromium() as browser:
                page = browser.new_context(viewport=VIEWPORT).new_page()
                shoot(page, url, args.out / "overview.png", heading("Deploy Studio"))
                shoot(
                    page,
                    f"{url}/browse?model=iris-classifier",
                    args.out / "browse.png",
                    heading("iris-classifier"),
                )
                shoot(
                    page,
                    f"{url}/inspect?{VERSION}",
                    args.out / "inspect.png",
                    heading("iris-classifier · version 1"),
                )

                def predicted(p) -> None:
                    heading("iris-classifier · version 1")(p)
                    button = p.get_by_role("button", name="Predict", exact=True)
                    button.click()
                    p.get_by_text("Waited", exact=True).wait_for(timeout=TIMEOUT_MS)
                    # Again, as a user previewing a second input sees it: the model is loaded.
                    button.click()
                    p.get_by_text("from cache", exact=True).wait_for(timeout=TIMEOUT_MS)
                    # The button and its results, rather than the page's top.
                    p.get_by_role("button", name="Predict", exact=True).evaluate(
                        "b => b.scrollIntoView({block: 'start'})"
                    )

                shoot(page, f"{url}/predict?{VERSION}", args.out / "predict.png", predicted)
                shoot(page, f"{url}/endpoints", args.out / "endpoints.png", heading("Endpoints"))
        finally:
            stop(process)
            if not args.no_endpoint:
                target.delete_endpoint(ENDPOINT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
