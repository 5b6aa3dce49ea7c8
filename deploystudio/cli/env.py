"""`deploystudio env plan|build|list|prune`: model environments from a terminal."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from deploystudio.config import Settings
from deploystudio.jsonable import to_jsonable

EXIT_BLOCKED = 1


def _print_json(value: Any) -> None:
    print(json.dumps(to_jsonable(value), indent=2, default=str))


def _plan(args: argparse.Namespace, settings: Settings):
    from deploystudio.environments import environments_root, plan_environment
    from deploystudio.environments.model_inputs import inputs_for_model

    inputs = inputs_for_model(args.model_uri, settings)
    return plan_environment(inputs, environments_root(settings.home), refresh=args.refresh)


def print_plan(plan, ready: bool) -> None:
    python = plan.python
    asked = f"asked {python.asked} ({python.asked_in})" if python.asked else "not stated"
    print(f"Environment plan for {plan.model_uri}")
    print(f"Python: {asked}; uses {python.used} ({python.path})")
    if python.match not in ("exact", "not-asked"):
        print(f"  {python.note}")
    print(f"Requirements from {plan.source or 'nowhere'}; packages from {plan.index}")
    rows = [
        (
            r.name,
            r.asked or "any",
            r.chosen or "-",
            r.saved_with or "-",
            f"{r.choice.value}: {r.reason}",
        )
        for r in plan.requirements
    ]
    if rows:
        _print_table(("package", "asked", "chosen", "MLmodel says", "why"), rows)
    if plan.locked:
        print(f"{len(plan.locked)} package(s) in all, with their dependencies.")
    for note in plan.notes:
        print(f"note: {note}")
    for blocker in plan.blockers:
        print(f"blocked: {blocker}")
    if plan.key is None:
        print("Cannot be built here: fix the above, or use the app's environment (--env app).")
    elif ready:
        print(f"Environment {plan.key}: ready.")
    else:
        print(f"Environment {plan.key}: not built yet (deploystudio env build {plan.model_uri}).")


def _print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def cmd_plan(args: argparse.Namespace, settings: Settings) -> int:
    from deploystudio.environments import lookup_key

    plan = _plan(args, settings)
    ready = plan.key is not None and lookup_key(settings.home, plan.key) is not None
    if args.json:
        _print_json({**plan.to_dict(), "ready": ready})
    else:
        print_plan(plan, ready)
    return 0 if plan.key is not None else EXIT_BLOCKED


def cmd_build(args: argparse.Namespace, settings: Settings) -> int:
    from deploystudio.environments import ensure

    started = time.monotonic()
    plan = _plan(args, settings)
    if plan.key is None:
        print_plan(plan, ready=False)
        return EXIT_BLOCKED
    print(
        f"Building environment {plan.key}: Python {plan.python.used}, "
        f"{len(plan.locked)} package(s).",
        flush=True,
    )
    if plan.python.match == "different":
        print(f"warning: {plan.python.note}", file=sys.stderr)
    environment = ensure(plan, settings.home, progress=lambda m: print(f"  {m}", flush=True))
    what = "Built" if environment.built_now else "Already built"
    print(
        f"{what}: {environment.root} (python {environment.python}) in "
        f"{time.monotonic() - started:.1f} s; log {environment.log}"
    )
    return 0


def _age(seconds_since_epoch: float | None) -> str:
    if seconds_since_epoch is None:
        return "-"
    days = (time.time() - seconds_since_epoch) / 86_400
    return "today" if days < 1 else f"{days:.0f} day(s) ago"


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    from deploystudio.environments.catalog import list_environments
    from deploystudio.inspection import format_bytes

    records = list_environments(settings.home)
    if args.json:
        _print_json(records)
        return 0
    if not records:
        print("No model environments yet (deploystudio env build MODEL).")
        return 0
    rows = [
        (
            r.key,
            r.state,
            r.python_version or "-",
            str(r.packages),
            format_bytes(r.size_bytes),
            _age(r.last_used),
            ", ".join(r.models) or "-",
        )
        for r in records
    ]
    _print_table(("environment", "state", "python", "packages", "size", "used", "models"), rows)
    total = sum(r.size_bytes for r in records)
    print(
        f"{len(records)} environment(s), {format_bytes(total)} on disk (files uv hard-links "
        "from its cache count in each environment that has them)."
    )
    for record in records:
        if record.state in ("failed", "unfinished"):
            print(f"{record.key}: {record.reason or record.state}; log {record.log}")
    return 0


def cmd_prune(args: argparse.Namespace, settings: Settings) -> int:
    from deploystudio.environments.catalog import prune
    from deploystudio.inspection import format_bytes

    removed = prune(settings.home, unused_days=args.unused_days, dry_run=args.dry_run)
    if args.json:
        _print_json(removed)
        return 0
    verb = "Would remove" if args.dry_run else "Removed"
    for record in removed:
        print(f"{verb} {record.key} ({record.state}, {format_bytes(record.size_bytes)})")
    freed = format_bytes(sum(r.size_bytes for r in removed))
    print(f"{verb} {len(removed)} environment(s), {freed}.")
    return 0


def add_env_commands(commands: argparse._SubParsersAction) -> None:
    """Add `env plan|build|list|prune` to the `deploystudio` parser."""
    env = commands.add_parser("env", help="model environments: plan, build with uv, list, prune")
    actions = env.add_subparsers(dest="env_command", required=True)

    plan = actions.add_parser("plan", help="what would be installed for a model, and why")
    build = actions.add_parser("build", help="build a model's environment with uv (cached)")
    for parser in (plan, build):
        parser.add_argument("model_uri", help="models:/NAME/VERSION, @ALIAS, runs:/... or a folder")
        parser.add_argument(
            "--refresh", action="store_true", help="plan afresh (unpinned packages move on)"
        )
    plan.add_argument("--json", action="store_true")
    plan.set_defaults(handler=cmd_plan)
    build.set_defaults(handler=cmd_build)

    listing = actions.add_parser("list", help="environments, their state, size and models")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_list)

    prune = actions.add_parser("prune", help="remove failed builds and unused environments")
    prune.add_argument(
        "--unused-days",
        type=float,
        default=30,
        help="remove ready environments not used for this many days (default 30)",
    )
    prune.add_argument("--dry-run", action="store_true", help="only say what would go")
    prune.add_argument("--json", action="store_true")
    prune.set_defaults(handler=cmd_prune)
