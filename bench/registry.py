"""Benchmark: the model browser's registry queries through Deploy Studio vs. plain MLflow.

Builds (or reuses) an MLflow registry with 2,000 registered models x 5 versions, all versions
pointing at one tiny artifact folder, then times the three queries the browse page makes:

1. the first page of 50 models, no filter (``Registry.list_models()``),
2. a name search (``Registry.list_models(name_query=...)``),
3. one model's versions (``Registry.list_versions(name)``),

each through ``deploystudio.registry.Registry`` and through the same calls, with the same
arguments, made directly on ``mlflow.MlflowClient``. Runs are interleaved ours/plain (the order
flips every repeat) so that a noisy machine penalises both sides alike. Prints medians, p90s
and the ratio ours/plain; the goal is a ratio within 1.1x and a first page under 1 s.

Run it from the repository root::

    .venv/bin/python bench/registry.py
    .venv/bin/python bench/registry.py --repeats 30 --keep /tmp/ds-bench   # reuse the registry
    .venv/bin/python bench/registry.py --tracking-uri sqlite:////path/to/mlflow.db

This prints figures; it is not a test and asserts nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# Set before MLflow is imported, which reads it at import time.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

from mlflow import MlflowClient

from deploystudio.registry import Registry

ORDER_BY = ["last_updated_timestamp DESC", "name ASC"]
PAGE_SIZE = 50
TEAMS = ("a", "b", "c")
ALIAS = "champion"
# "model-01" is a substring of model-0100 .. model-0199: 100 hits, so a full page plus a token.
SEARCH_QUERY = "model-01"
SEARCH_FILTER = f"name ILIKE '%{SEARCH_QUERY}%'"
RATIO_GOAL = 1.1
FIRST_PAGE_GOAL_MS = 1000.0


def model_name(i: int) -> str:
    return f"model-{i:04d}"


def quiet_mlflow() -> None:
    # MLflow configures its own logger on import (level INFO), so this must run afterwards.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def make_artifact(directory: Path) -> Path:
    """One minimal model folder that every version points at; nothing here loads it."""
    artifact = directory / "model"
    artifact.mkdir(parents=True, exist_ok=True)
    mlmodel = artifact / "MLmodel"
    if not mlmodel.exists():
        mlmodel.write_text("artifact_path: model\nflavors: {}\nmlflow_version: bench\n")
    return artifact


def existing_models(client: MlflowClient) -> dict[str, tuple[int, set[str]]]:
    """Name -> (highest version number, aliases) for every model already in the registry."""
    found: dict[str, tuple[int, set[str]]] = {}
    token = None
    while True:
        page = client.search_registered_models(max_results=1000, page_token=token)
        for model in page:
            versions = [int(v.version) for v in model.latest_versions or []]
            found[model.name] = (max(versions, default=0), set((model.aliases or {}).keys()))
        token = page.token
        if not token:
            return found


def populate(client: MlflowClient, models: int, versions: int, source: str) -> tuple[int, float]:
    """Create what is missing (so an interrupted --keep run resumes); returns (objects, seconds).

    Plain MlflowClient calls, not bulk SQL: 2,000 models x 5 versions took ~2 minutes on a
    2-core machine, under the ~3 minutes that would justify writing MLflow's tables directly,
    and this fills the store exactly as a real registry is filled.
    """
    start = time.perf_counter()
    found = existing_models(client)
    created = 0
    for i in range(models):
        name = model_name(i)
        if name not in found:
            client.create_registered_model(
                name,
                tags={"team": TEAMS[i % len(TEAMS)], "bench": "registry"},
                description=f"Benchmark model {i}.",
            )
            created += 1
        highest, aliases = found.get(name, (0, set()))
        for _ in range(highest, versions):
            client.create_model_version(name, source=source, run_id=None)
            created += 1
        # Aliases on a quarter of the models, so the versions query has one to attach.
        if i % 4 == 0 and ALIAS not in aliases:
            client.set_registered_model_alias(name, ALIAS, str(versions))
            created += 1
        if created and (i + 1) % 250 == 0:
            elapsed = time.perf_counter() - start
            print(f"  ... {i + 1}/{models} models ({elapsed:.0f} s)", flush=True)
    return created, time.perf_counter() - start


def plain_first_page(client: MlflowClient) -> object:
    return client.search_registered_models(max_results=PAGE_SIZE, order_by=ORDER_BY)


def plain_search(client: MlflowClient) -> object:
    return client.search_registered_models(
        filter_string=SEARCH_FILTER, max_results=PAGE_SIZE, order_by=ORDER_BY
    )


def plain_versions(client: MlflowClient, name: str) -> object:
    model = client.get_registered_model(name)
    versions = []
    token = None
    while True:
        page = client.search_model_versions(
            filter_string=f"name='{name}'",
            max_results=1000,
            order_by=["version_number DESC"],
            page_token=token,
        )
        versions.extend(page)
        token = page.token
        if not token:
            return model, versions


def timed_ms(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def p90(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=10)[-1] if len(samples) > 1 else samples[0]


def cold_first_page_ms(tracking_uri: str, plain: bool) -> float | None:
    """The first page from a brand-new client in a fresh process (store and engine setup
    included, imports excluded): what the app's very first page load pays. In this process the
    store is already cached by MLflow, so it has to be measured elsewhere."""
    if plain:
        call = (
            f"MlflowClient({tracking_uri!r}, {tracking_uri!r})"
            f".search_registered_models(max_results={PAGE_SIZE}, order_by={ORDER_BY!r})"
        )
    else:
        call = f"Registry({tracking_uri!r}).list_models(page_size={PAGE_SIZE})"
    code = (
        "import os, time, logging\n"
        "os.environ.setdefault('MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR', 'false')\n"
        "from mlflow import MlflowClient\n"
        "from deploystudio.registry import Registry\n"
        "logging.getLogger('mlflow').setLevel(logging.WARNING)\n"
        "t = time.perf_counter()\n"
        f"{call}\n"
        "print((time.perf_counter() - t) * 1000)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    try:
        return float(result.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        print(f"  (cold probe failed: {result.stderr.strip()[-300:]})")
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", help="registry to use (default: SQLite in a temp dir)")
    parser.add_argument("--models", type=int, default=2000)
    parser.add_argument("--versions", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--keep", type=Path, help="directory holding a reusable SQLite registry")
    args = parser.parse_args()

    run_start = time.perf_counter()
    quiet_mlflow()
    with tempfile.TemporaryDirectory(prefix="ds-bench-") as tmp:
        workdir = args.keep.resolve() if args.keep else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        tracking_uri = args.tracking_uri or f"sqlite:///{workdir / 'mlflow.db'}"
        source = str(make_artifact(workdir))
        print(f"Registry: {tracking_uri}")
        print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")

        plain = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        created, seconds = populate(plain, args.models, args.versions, source)
        if created:
            print(
                f"Population: {created} objects created through MlflowClient in {seconds:.1f} s"
                f" ({args.models} models x {args.versions} versions, one artifact: {source})"
            )
        else:
            print(f"Population: registry already complete, checked in {seconds:.1f} s")

        reg = Registry(tracking_uri)
        # A multiple of 4, so it carries an alias (see populate).
        versions_of = model_name(4 * (min(40, args.models - 1) // 4))
        queries: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
            (
                f"first page ({PAGE_SIZE})",
                lambda: reg.list_models(page_size=PAGE_SIZE),
                lambda: plain_first_page(plain),
            ),
            (
                f"name search '{SEARCH_QUERY}'",
                lambda: reg.list_models(name_query=SEARCH_QUERY, page_size=PAGE_SIZE),
                lambda: plain_search(plain),
            ),
            (
                f"versions of {versions_of}",
                lambda: reg.list_versions(versions_of),
                lambda: plain_versions(plain, versions_of),
            ),
        ]

        # Sanity: both sides must fetch the same thing, or the ratio means nothing.
        page = reg.list_models(page_size=PAGE_SIZE)
        hits = reg.list_models(name_query=SEARCH_QUERY, page_size=PAGE_SIZE)
        found_versions = reg.list_versions(versions_of)
        assert [m.name for m in page.models] == [m.name for m in plain_first_page(plain)]
        assert [m.name for m in hits.models] == [m.name for m in plain_search(plain)]
        assert len(found_versions) == len(plain_versions(plain, versions_of)[1])
        print(
            f"Checked: first page {len(page.models)} models, search {len(hits.models)} "
            f"(more: {hits.next_page_token is not None}), {len(found_versions)} versions"
        )

        ours: dict[str, list[float]] = {label: [] for label, _, _ in queries}
        theirs: dict[str, list[float]] = {label: [] for label, _, _ in queries}
        for repeat in range(args.repeats):
            for label, ours_fn, plain_fn in queries:
                # Flip who goes first so caches warmed by one side favour each equally often.
                if repeat % 2 == 0:
                    ours[label].append(timed_ms(ours_fn))
                    theirs[label].append(timed_ms(plain_fn))
                else:
                    theirs[label].append(timed_ms(plain_fn))
                    ours[label].append(timed_ms(ours_fn))

        cold = cold_first_page_ms(tracking_uri, plain=False)
        cold_plain = cold_first_page_ms(tracking_uri, plain=True)

    header = (
        f"{'query':<28} | {'deploystudio median ms':>22} | {'mlflow median ms':>16} | "
        f"{'ds p90':>7} | {'mlflow p90':>10} | {'ratio':>6} | goal"
    )
    print()
    print(f"{args.models} models x {args.versions} versions, {args.repeats} interleaved repeats")
    print(header)
    print("-" * len(header))
    first_page_ms = None
    for label, _, _ in queries:
        ours_median = statistics.median(ours[label])
        plain_median = statistics.median(theirs[label])
        ratio = ours_median / plain_median
        first_page_ms = first_page_ms if first_page_ms is not None else ours_median
        verdict = "goal met" if ratio <= RATIO_GOAL else "goal missed"
        print(
            f"{label:<28} | {ours_median:>22.1f} | {plain_median:>16.1f} | "
            f"{p90(ours[label]):>7.1f} | {p90(theirs[label]):>10.1f} | {ratio:>5.2f}x | {verdict}"
        )
    print()
    assert first_page_ms is not None
    verdict = "goal met" if first_page_ms < FIRST_PAGE_GOAL_MS else "goal missed"
    print(f"First page (deploystudio, warm median): {first_page_ms:.1f} ms < 1 s: {verdict}")
    if cold is not None:
        verdict = "goal met" if cold < FIRST_PAGE_GOAL_MS else "goal missed"
        print(f"First page (deploystudio, fresh process, cold store): {cold:.1f} ms: {verdict}")
    if cold_plain is not None:
        print(f"First page (plain MlflowClient, fresh process, cold store): {cold_plain:.1f} ms")
    print(f"Whole run: {time.perf_counter() - run_start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
