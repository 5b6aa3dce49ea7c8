"""`deploystudio` command line: the same functions the pages call, for terminals and scripts."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from deploystudio.cli.options import add_env_option
from deploystudio.config import Settings, load_settings, redact_uri
from deploystudio.errors import DeployStudioError
from deploystudio.jsonable import to_jsonable

EXIT_USER_ERROR = 2
# The input example MLflow writes; found in a model folder even when MLmodel does not list it.
UNLISTED_EXAMPLE = "input_example.json"


def _registry(settings: Settings):
    from deploystudio.registry import Registry

    return Registry(settings.tracking_uri, settings.registry_uri)


def cmd_seed_demo(args: argparse.Namespace, settings: Settings) -> int:
    from deploystudio.demo import seed_demo

    registry = _registry(settings)
    where = redact_uri(settings.tracking_uri)
    if args.if_empty and not registry.is_empty():
        print(f"Registry {where} already has models; not seeding (drop --if-empty to add demos).")
        return 0
    added = seed_demo(settings, registry, progress=lambda message: print(message, flush=True))
    if added:
        print(f"Registered {len(added)} demo version(s) in {where}: {', '.join(added)}")
    else:
        print(f"All demo models are already registered in {where}.")
    return 0


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    from deploystudio.registry import parse_tag_filter

    registry = _registry(settings)
    tag = parse_tag_filter(args.tag or "")
    models, token = [], None
    while True:
        page = registry.list_models(args.filter or "", tag, args.alias or "", args.page_size, token)
        models.extend(page.models)
        token = page.next_page_token
        if not args.all or token is None:
            break
    if args.json:
        print(json.dumps(to_jsonable(models), indent=2))
        return 0
    if not models:
        print("No registered models match.")
        return 0
    rows = [
        (
            m.name,
            m.latest_version or "-",
            ", ".join(f"{a}->v{v}" for a, v in sorted(m.aliases.items())) or "-",
            m.last_updated.strftime("%Y-%m-%d %H:%M") if m.last_updated else "-",
            m.description,
        )
        for m in models
    ]
    _print_table(("name", "latest", "aliases", "updated", "description"), rows)
    if token is not None:
        print("(more models: use --all or --page-size)")
    return 0


def cmd_inspect(args: argparse.Namespace, settings: Settings) -> int:
    from deploystudio.inspection import inspect_model

    inspection = inspect_model(args.model_uri, settings)
    if args.json:
        print(json.dumps(to_jsonable(inspection), indent=2, default=str))
        return 0
    print(f"Model: {inspection.resolved_uri}")
    if inspection.version is not None:
        aliases = ", ".join(inspection.version.aliases) or "none"
        print(
            f"Version {inspection.version.version}: status {inspection.version.status}, "
            f"aliases {aliases}"
        )
    print(
        "Flavors: "
        + ", ".join(f"{f.name} {f.framework_version or ''}".strip() for f in inspection.flavors)
    )
    signature = inspection.signature
    if signature is None:
        print("Signature: none (inputs are not checked)")
    else:
        print(f"Signature ({signature.input_kind}):")
        for field in signature.inputs:
            shape = f" shape {field.shape}" if field.shape else ""
            optional = "" if field.required else " (optional)"
            print(f"  {field.name or '(unnamed)'}: {field.type}{shape}{optional}")
        for param in signature.params:
            print(f"  param {param.name}: {param.type} = {param.default!r}")
    print("Deployability report:")
    for check in inspection.report:
        print(f"  [{check.status.value.upper():4}] {check.name}: {check.detail}")
        if check.fix:
            print(f"         fix: {check.fix}")
    return 0


def cmd_predict(args: argparse.Namespace, settings: Settings) -> int:
    from mlflow.models import Model

    from deploystudio.environments.choice import EnvMode, EnvModeError, choose, parse_mode
    from deploystudio.environments.diagnosis import explained
    from deploystudio.errors import PayloadError
    from deploystudio.payload_formats import ModelInput, PayloadFormat
    from deploystudio.payloads import DEFAULT_MAX_BYTES, parse_payload
    from deploystudio.prediction import ModelCache, local_model_path, predict_in_process
    from deploystudio.worker.process import PredictionWorker
    from deploystudio.worker.sandbox import Access

    model_path = local_model_path(args.model_uri, settings)
    model = Model.load(str(model_path / "MLmodel"))
    if args.example:
        example = model.load_input_example(str(model_path))
        if example is not None:
            model_input = ModelInput(example, model.load_input_example_params(str(model_path)))
        else:
            # MLmodel may not list an input_example.json the folder holds (models saved by
            # hand, or by other tools); read it as a request body, inside the model only.
            from deploystudio.model_files import LocalModelFiles

            found = LocalModelFiles(model_path).fetch(UNLISTED_EXAMPLE)
            if found is None:
                raise PayloadError("This model has no input example: pass --input FILE.")
            if found.stat().st_size > DEFAULT_MAX_BYTES:
                raise PayloadError(f"{UNLISTED_EXAMPLE} is too large to read: pass --input FILE.")
            model_input = parse_payload(
                found.read_bytes(), model.signature, filename=UNLISTED_EXAMPLE
            )
    else:
        try:
            body = Path(args.input).read_bytes()
        except OSError as exc:
            raise PayloadError(f"Cannot read {args.input}: {exc.strerror}.") from exc
        model_input = parse_payload(
            body,
            # The whole signature, so that `params` are checked as the payload is read.
            model.signature,
            payload_format=PayloadFormat(args.format) if args.format else None,
            filename=Path(args.input).name,
        )
    if args.in_process:
        if parse_mode(args.env) is EnvMode.MODEL:
            raise EnvModeError("--in-process runs the model in this process: use --env app.")
        chosen = choose(EnvMode.APP, model_path, settings.home)
        chosen_reason = "The app's environment: --in-process runs the model in this process."
    else:
        chosen = choose(args.env, model_path, settings.home, progress=_to_stderr)
        chosen_reason = chosen.reason
    print(f"environment: {chosen_reason}", file=sys.stderr)
    if args.in_process:
        prediction = predict_in_process(ModelCache(), model_path, model_input)
    else:
        # Model code is untrusted: by default it runs in a worker behind the sandbox, which reads
        # the model folder and nothing of the data folder, the store or the user's files.
        worker = PredictionWorker(
            settings.home / "logs" / "cli-predict.log",
            timeout_seconds=args.timeout,
            access=Access.of(read=chosen.read_roots),
            python=chosen.python_for_worker,
        )
        try:
            prediction = worker.predict(model_path, model_input)
        except DeployStudioError as exc:
            raise explained(exc, chosen.environment is None, model_path) from exc
        finally:
            worker.stop()
    for warning in prediction.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        print(
            json.dumps(
                {
                    "predictions": to_jsonable(prediction.output.to_dict(orient="records")),
                    "load_seconds": prediction.load_seconds,
                    "predict_seconds": prediction.predict_seconds,
                    "warnings": prediction.warnings,
                    "environment": {
                        "mode": chosen.mode.value,
                        "key": chosen.environment.key if chosen.environment else None,
                        "reason": chosen_reason,
                    },
                },
                indent=2,
                default=str,
            )
        )
    else:
        print(prediction.output.to_string())
        print(
            f"({len(prediction.output)} row(s); load {prediction.load_seconds:.2f} s, "
            f"predict {prediction.predict_seconds * 1000:.1f} ms)",
            file=sys.stderr,
        )
    return 0


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    widths[-1] = min(widths[-1], 60)
    for row in [header, *rows]:
        print("  ".join(str(cell)[:w].ljust(w) for cell, w in zip(row, widths, strict=True)))


def _payload_formats() -> list:
    from deploystudio.payload_formats import PayloadFormat

    return list(PayloadFormat)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deploystudio", description="Deploy Studio: MLflow models to endpoints."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    seed = commands.add_parser("seed-demo", help="register the demo models")
    seed.add_argument("--if-empty", action="store_true", help="only when the registry is empty")
    seed.set_defaults(handler=cmd_seed_demo)

    models = commands.add_parser("models", help="list registered models")
    models.add_argument("--filter", help="part of the model name (case-insensitive)")
    models.add_argument("--tag", help="KEY=VALUE, or KEY for models that have the tag")
    models.add_argument("--alias", help="only models that have this alias")
    models.add_argument("--page-size", type=int, default=50)
    models.add_argument("--all", action="store_true", help="page through every match")
    models.add_argument("--json", action="store_true")
    models.set_defaults(handler=cmd_models)

    inspect = commands.add_parser("inspect", help="describe a model and its deployability")
    inspect.add_argument(
        "model_uri", help="models:/NAME/VERSION, models:/NAME@ALIAS, runs:/ID/PATH or a folder"
    )
    inspect.add_argument("--json", action="store_true")
    inspect.set_defaults(handler=cmd_inspect)

    predict = commands.add_parser(
        "predict", help="predict with a model, in a worker process behind the sandbox"
    )
    predict.add_argument("model_uri", help="as for inspect")
    source = predict.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", help="a JSON body, CSV, Parquet or .npy file")
    source.add_argument("--example", action="store_true", help="use the model's input example")
    predict.add_argument(
        "--format",
        choices=[f.value for f in _payload_formats()],
        help="the input's format (detected from the file when omitted)",
    )
    predict.add_argument("--json", action="store_true")
    predict.add_argument(
        "--timeout", type=float, default=600.0, help="seconds the model may take (default 600)"
    )
    predict.add_argument(
        "--in-process",
        action="store_true",
        help="run the model in this process, with your environment and files: trusted models only",
    )
    add_env_option(predict)
    predict.set_defaults(handler=cmd_predict)

    from deploystudio.cli.script import add_script_command
    from deploystudio.cli.wrap import add_wrap_command

    add_wrap_command(commands)
    add_script_command(commands)
    from deploystudio.cli.endpoint import add_endpoint_commands

    add_endpoint_commands(commands)
    from deploystudio.cli.batch import add_batch_commands

    add_batch_commands(commands)
    from deploystudio.cli.azure import add_azure_commands

    add_azure_commands(commands)
    from deploystudio.cli.env import add_env_commands

    add_env_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    try:
        return args.handler(args, load_settings())
    except DeployStudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
