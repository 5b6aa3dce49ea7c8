"""`deploystudio endpoint ...` and `deploystudio deploy ...`: local endpoints from a terminal.

The same LocalTarget the pages use. Output is a short text for people, or JSON with `--json`.
Keys are printed only by `endpoint keys` (the user's own terminal asked for them), never by
any other command and never into a log.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from deploystudio.cli.options import add_action, add_env_option
from deploystudio.config import Settings
from deploystudio.errors import DeployStudioError, PayloadError, TrafficError
from deploystudio.jsonable import to_jsonable

EXIT_FAILED = 1
SCRIPT_FILE = "score.py"
CONDA_FILE = "conda.yaml"
IMAGE_FILE = "image.txt"


def _target(settings: Settings):
    from deploystudio.deployment.local.target import LocalTarget

    return LocalTarget(settings)


def _repaired(settings: Settings, endpoint: str | None = None):
    """The target, after squaring `endpoint`'s records (or all) with the processes: a front
    that died is started again and a start whose command was killed is settled, whichever
    command comes next (see `LocalTarget.repair`)."""
    target = _target(settings)
    for note in target.repair(endpoint):
        # On stderr: stdout holds the command's own answer (JSON, predictions).
        print(f"repaired {note}", file=sys.stderr, flush=True)
    return target


def _restarts(log_path: str | None) -> int:
    from deploystudio.deployment.local.healing import restart_count

    return restart_count(log_path)


def _print_json(value: Any) -> None:
    print(json.dumps(to_jsonable(value), indent=2, default=str))


def _progress(args: argparse.Namespace):
    # With --json, stdout holds only the JSON answer.
    out = sys.stderr if getattr(args, "json", False) else sys.stdout
    return lambda message: print(message, file=out, flush=True)


def _endpoint_dict(endpoint, deployments=None) -> dict[str, Any]:
    values = endpoint.as_dict()
    if deployments is not None:
        values["deployments"] = [
            d.as_dict() | {"restarts": _restarts(d.log_path)} for d in deployments
        ]
    return values


def _traffic_text(endpoint) -> str:
    weights = ", ".join(f"{n}={w}" for n, w in endpoint.traffic.items()) or "no deployments"
    mirror = f"; mirror {endpoint.mirror[0]}={endpoint.mirror[1]}" if endpoint.mirror else ""
    return weights + mirror


# -- endpoint commands ------------------------------------------------------------------------


def cmd_create(args: argparse.Namespace, settings: Settings) -> int:
    endpoint = _target(settings).create_endpoint(
        args.name,
        {"auth_mode": args.auth_mode, "description": args.description or ""},
        progress=_progress(args),
    )
    if args.json:
        _print_json(endpoint.as_dict())
    elif endpoint.reason:
        print(f"Endpoint {endpoint.name} is {endpoint.state}: {endpoint.reason}", file=sys.stderr)
    else:
        print(f"Endpoint {endpoint.name} is {endpoint.state}: {endpoint.scoring_uri}")
        if endpoint.auth_mode == "key":
            print(f"Keys: deploystudio endpoint keys {endpoint.name}")
    return 0 if endpoint.state == "ready" else EXIT_FAILED


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    target = _repaired(settings)
    endpoints = target.list_endpoints()
    if args.json:
        _print_json([_endpoint_dict(e, target.list_deployments(e.name)) for e in endpoints])
        return 0
    if not endpoints:
        print("No endpoints. Create one: deploystudio endpoint create NAME")
        return 0
    rows = [(e.name, e.state.value, e.scoring_uri or "-", _traffic_text(e)) for e in endpoints]
    _print_table(("name", "state", "scoring URI", "traffic"), rows)
    return 0


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    target = _repaired(settings, args.name)
    endpoint = target.get_endpoint(args.name)
    deployments = target.list_deployments(endpoint.name)
    if args.json:
        _print_json(_endpoint_dict(endpoint, deployments))
        return 0
    print(f"Endpoint {endpoint.name}: {endpoint.state}")
    if endpoint.reason:
        print(f"  reason: {endpoint.reason}")
    print(f"  scoring URI: {endpoint.scoring_uri or '-'} (auth: {endpoint.auth_mode})")
    print(f"  traffic: {_traffic_text(endpoint)}")
    for d in deployments:
        where = f"port {d.port}, pid {d.pid}" if d.port else "no process"
        restarts = _restarts(d.log_path)
        again = f", restarted {restarts} time(s) by the endpoint" if restarts else ""
        print(f"  deployment {d.name}: {d.state} ({d.runtime}, {d.model_uri}, {where}{again})")
        print(f"    environment: {d.environment_label}")
        if d.reason:
            print(f"    reason: {d.reason}")
    return 0


def cmd_delete(args: argparse.Namespace, settings: Settings) -> int:
    _target(settings).delete_endpoint(args.name)
    print(f"Endpoint {args.name} is deleted (its servers are stopped).")
    return 0


def parse_weights(items: list[str]) -> dict[str, int]:
    """`["blue=90", "green=10"]` -> {"blue": 90, "green": 10}; TrafficError when malformed."""
    weights: dict[str, int] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value.strip().lstrip("-").isdigit():
            raise TrafficError(
                f"Cannot read {item!r}: write each share as DEPLOYMENT=PERCENT, e.g. blue=90."
            )
        weights[name] = int(value)
    return weights


def cmd_traffic(args: argparse.Namespace, settings: Settings) -> int:
    target = _repaired(settings, args.name)
    config: dict[str, Any] = {}
    if args.weights:
        config["traffic"] = parse_weights(args.weights)
    if args.no_mirror:
        config["mirror"] = None
    elif args.mirror:
        ((name, percent),) = parse_weights([args.mirror]).items()
        config["mirror"] = (name, percent)
    endpoint = (
        target.update_endpoint(args.name, config) if config else target.get_endpoint(args.name)
    )
    if args.json:
        _print_json({"name": endpoint.name, "traffic": endpoint.traffic, "mirror": endpoint.mirror})
    else:
        print(f"Endpoint {endpoint.name} traffic: {_traffic_text(endpoint)}")
    return 0


def cmd_invoke(args: argparse.Namespace, settings: Settings) -> int:
    try:
        text = Path(args.input).read_text(encoding="utf-8")
    except OSError as exc:
        raise PayloadError(f"Cannot read {args.input}: {exc.strerror}.") from exc
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise PayloadError(
            f"{args.input} is not JSON ({exc}). Send a request body such as "
            '{"input_data": {"columns": [...], "data": [[...]]}}.'
        ) from exc
    answer = _repaired(settings, args.name).predict(
        deployment_name=args.deployment, inputs=body, endpoint=args.name
    )
    print(json.dumps(answer, indent=None if args.json else 2))
    return 0


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    target = _repaired(settings, args.name)
    if args.regenerate:
        keys = target.regenerate_key(args.name, args.regenerate)
    else:
        keys = target.get_keys(args.name)
    if args.json:
        print(json.dumps({"primary": keys.primary, "secondary": keys.secondary}))
    else:
        print(f"primary:   {keys.primary}")
        print(f"secondary: {keys.secondary}")
    return 0


def cmd_restart(args: argparse.Namespace, settings: Settings) -> int:
    from deploystudio.deployment.base import DeploymentState
    from deploystudio.errors import ResourceInUseError

    # The repair first: it starts a dead front and settles records a killed command left.
    target = _repaired(settings, args.name)
    progress = _progress(args)
    endpoint = target.get_endpoint(args.name)
    names = (
        [args.deployment]
        if args.deployment
        else [
            d.name
            for d in target.list_deployments(endpoint.name)
            if d.state in (DeploymentState.FAILED, DeploymentState.STOPPED)
        ]
    )
    results = []
    for name in names:
        try:
            results.append(target.restart_deployment(name, endpoint.name, progress=progress))
        except ResourceInUseError as exc:
            if args.deployment:
                raise
            print(f"{name}: {exc}")  # the front restarts it: nothing for us to do
    endpoint = target.get_endpoint(endpoint.name)
    if endpoint.state != DeploymentState.READY and any(
        d.state == DeploymentState.READY for d in target.list_deployments(endpoint.name)
    ):
        print(f"Endpoint {endpoint.name} is {endpoint.state}: {endpoint.reason}", file=sys.stderr)
        return EXIT_FAILED
    if not names:
        print(f"Endpoint {endpoint.name} has no failed or stopped deployment to restart.")
    for record in results:
        if record.state != DeploymentState.READY:
            print(f"{record.name}: {record.state}: {record.reason}", file=sys.stderr)
    ok = all(r.state == DeploymentState.READY for r in results)
    return 0 if ok else EXIT_FAILED


def cmd_stop_all(args: argparse.Namespace, settings: Settings) -> int:
    stopped = _target(settings).stop_all()
    if args.json:
        _print_json({"stopped": stopped})
    else:
        for line in stopped:
            print(f"stopped {line}")
        print(f"{len(stopped)} process(es) stopped; no server of Deploy Studio runs now.")
    return 0


# -- deploy -----------------------------------------------------------------------------------


def _bundle_from_folder(settings: Settings, folder: Path, name: str, model_uri: str) -> str:
    """Save FOLDER/score.py (with its conda.yaml and image.txt, as `script new` writes them) as
    the next version of a bundle named after the deployment; return "name:version".

    The deployment then serves a saved copy: editing the folder later changes nothing that
    runs, and a restart serves the same script.
    """
    from deploystudio.customization.bundles import BundleStore
    from deploystudio.customization.script_environment import (
        EnvironmentSpec,
        generate_environment,
    )
    from deploystudio.prediction import local_model_path

    script_path = folder / SCRIPT_FILE
    if not script_path.is_file():
        raise DeployStudioError(
            f"'{folder}' has no {SCRIPT_FILE}: write one with `deploystudio script new`."
        )
    generated = None
    if not (folder / CONDA_FILE).is_file() or not (folder / IMAGE_FILE).is_file():
        generated = generate_environment(local_model_path(model_uri, settings))
    conda = (
        (folder / CONDA_FILE).read_text(encoding="utf-8")
        if (folder / CONDA_FILE).is_file()
        else generated.conda_yaml
    )
    image = (
        (folder / IMAGE_FILE).read_text(encoding="utf-8").strip()
        if (folder / IMAGE_FILE).is_file()
        else generated.base_image
    )
    bundle = BundleStore(settings.home / "bundles").save(
        name,
        script_path.read_text(encoding="utf-8"),
        EnvironmentSpec(conda_yaml=conda, base_image=image),
        model_uri,
        template="custom",
        note=f"deployed from {folder.resolve()}",
    )
    return bundle.label


def cmd_deploy(args: argparse.Namespace, settings: Settings) -> int:
    from deploystudio.deployment.base import Runtime
    from deploystudio.deployment.deploy_request import DeployRequest, deploy, request_problems
    from deploystudio.deployment.names import validate_name
    from deploystudio.errors import DeploymentConfigError, ScoringServerError

    validate_name(args.deployment, "deployment")
    if args.script and args.runtime != "azureml":
        raise DeploymentConfigError(
            "--script runs score.py in Azure ML's inference server: use --runtime azureml."
        )
    target = _target(settings)
    progress = _progress(args)
    endpoints = target.list_endpoints()
    if any(e.name.lower() == args.endpoint.lower() for e in endpoints):
        # A deployment its killed command left starting is settled before its name is judged.
        for note in target.repair(args.endpoint):
            progress(f"repaired {note}")
    request = DeployRequest(
        model_uri=args.model,
        endpoint=args.endpoint,
        deployment=args.deployment,
        # The CLI creates the endpoint when it is missing (the page asks).
        new_endpoint=all(e.name.lower() != args.endpoint.lower() for e in endpoints),
        runtime=Runtime(args.runtime),
        instance_count=args.instance_count or 1,
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        all_traffic=args.all_traffic,
        environment=args.env,
    )
    problems = request_problems(request, endpoints, target.list_deployments())
    if problems:
        raise DeploymentConfigError(" ".join(problems))
    if args.script:
        bundle = _bundle_from_folder(settings, Path(args.script), args.deployment, args.model)
        progress(f"Saved {args.script}/{SCRIPT_FILE} as scoring bundle {bundle}")
        request = dataclasses.replace(request, bundle=bundle)
    try:
        record = deploy(target, request, progress, timeout_seconds=args.timeout)
    except ScoringServerError as exc:
        # The record keeps why it failed and the server's log tail.
        print(exc, file=sys.stderr)
        failed = target.get_deployment(args.deployment, args.endpoint)
        if args.json:
            endpoint = target.get_endpoint(args.endpoint)
            _print_json(_endpoint_dict(endpoint, [failed]) | {"deployment": failed.as_dict()})
        if failed.log_tail:
            print(failed.log_tail, file=sys.stderr)
        return EXIT_FAILED
    endpoint = target.get_endpoint(args.endpoint)
    if args.json:
        _print_json(_endpoint_dict(endpoint, [record]) | {"deployment": record.as_dict()})
    else:
        print(
            f"Deployment {endpoint.name}/{record.name} is ready ({record.model_uri}). "
            f"Scoring URI: {endpoint.scoring_uri}; traffic: {_traffic_text(endpoint)}"
        )
    return 0


def _print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


# -- parser -----------------------------------------------------------------------------------


def add_endpoint_commands(commands: argparse._SubParsersAction) -> None:
    """Add `endpoint ...` and `deploy` to the `deploystudio` parser."""
    endpoint = commands.add_parser("endpoint", help="local online endpoints")
    actions = endpoint.add_subparsers(dest="endpoint_command", required=True)

    create = add_action(
        actions, "create", "create an endpoint and start its front", cmd_create, "name"
    )
    create.add_argument("--auth-mode", choices=["key", "none"], default="key")
    create.add_argument("--description")
    add_action(actions, "list", "endpoints with their state and traffic", cmd_list)
    add_action(actions, "show", "one endpoint and its deployments", cmd_show, "name")
    add_action(
        actions,
        "delete",
        "stop an endpoint's servers and delete it",
        cmd_delete,
        "name",
        json_output=False,
    )

    traffic = actions.add_parser(
        "traffic", help="set live traffic (blue=90 green=10) and mirror; show it without weights"
    )
    traffic.add_argument("name")
    traffic.add_argument("weights", nargs="*", metavar="DEPLOYMENT=PERCENT")
    mirror = traffic.add_mutually_exclusive_group()
    mirror.add_argument("--mirror", metavar="DEPLOYMENT=PERCENT", help="copy this share to it")
    mirror.add_argument("--no-mirror", action="store_true", help="stop mirroring")
    traffic.add_argument("--json", action="store_true")
    traffic.set_defaults(handler=cmd_traffic)

    invoke = actions.add_parser("invoke", help="POST a JSON request file to the scoring URI")
    invoke.add_argument("name")
    invoke.add_argument("--input", required=True, help="a JSON request body file")
    invoke.add_argument("--deployment", help="send it to this deployment (header routing)")
    invoke.add_argument("--json", action="store_true", help="the answer on one line")
    invoke.set_defaults(handler=cmd_invoke)

    keys = add_action(
        actions, "keys", "print the endpoint's keys (or regenerate one)", cmd_keys, "name"
    )
    keys.add_argument("--regenerate", choices=["primary", "secondary"])
    restart = add_action(
        actions,
        "restart",
        "start failed or stopped deployments again",
        cmd_restart,
        "name",
        json_output=False,
    )
    restart.add_argument("--deployment", help="only this one")
    add_action(actions, "stop-all", "stop every local server of Deploy Studio", cmd_stop_all)

    deploy = commands.add_parser("deploy", help="deploy a model to a local endpoint")
    deploy.add_argument("endpoint", metavar="NAME", help="the endpoint (created if missing)")
    deploy.add_argument("--deployment", required=True, help="the deployment's name")
    deploy.add_argument("--model", required=True, help="models:/NAME/VERSION, @ALIAS, or a folder")
    deploy.add_argument("--script", help="a folder with score.py (as `script new` writes it)")
    deploy.add_argument("--runtime", choices=["azureml", "mlflow"], default="azureml")
    deploy.add_argument("--instance-count", type=int, help="server workers (1)")
    deploy.add_argument(
        "--max-batch-size",
        type=int,
        default=1,
        help="adaptive batching: the front gathers up to this many concurrent requests with the "
        "same columns and params into one model call (1: off; models with one prediction per "
        "row only; not an Azure setting)",
    )
    deploy.add_argument(
        "--max-wait-ms",
        type=int,
        default=0,
        help="adaptive batching: how long a request may wait for others while the server is "
        "free (0: never; requests gather while it is busy)",
    )
    deploy.add_argument("--all-traffic", action="store_true", help="send it 100%% of traffic")
    deploy.add_argument("--timeout", type=float, help="seconds to wait for the server (300)")
    deploy.add_argument("--json", action="store_true")
    add_env_option(deploy)
    deploy.set_defaults(handler=cmd_deploy)
