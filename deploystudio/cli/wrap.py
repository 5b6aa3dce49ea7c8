"""`deploystudio wrap`: build a wrapper around a model version and register it, in this process
(like `predict`: the terminal's user runs the model code they point at)."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from deploystudio.config import Settings
from deploystudio.errors import WrapError
from deploystudio.jsonable import to_jsonable


def add_wrap_command(commands: argparse._SubParsersAction) -> None:
    from deploystudio.customization.wrap_spec import WrapperKind

    wrap = commands.add_parser(
        "wrap", help="wrap a model (probabilities, pre/post steps, pipeline, custom code)"
    )
    wrap.add_argument("model_uri", help="models:/NAME/VERSION, models:/NAME@ALIAS or a folder")
    wrap.add_argument("--kind", required=True, choices=[k.value for k in WrapperKind])
    wrap.add_argument(
        "--register-as", required=True, help="registered model to add the version to (or create)"
    )
    wrap.add_argument("--code", help="a Python file with a PythonModel class (--kind custom)")
    wrap.add_argument(
        "--options",
        help='JSON: {"pre": {...}, "post": {...}} for pre-post and proba, '
        '{"pipeline_steps": [...]} for pipeline',
    )
    wrap.add_argument("--json", action="store_true")
    wrap.set_defaults(handler=cmd_wrap)


def cmd_wrap(args: argparse.Namespace, settings: Settings) -> int:
    from deploystudio.customization.wrap_registration import register_wrapped_model
    from deploystudio.customization.wrapping import (
        build_wrapped_model,
        spec_from_options,
        work_folder,
    )
    from deploystudio.prediction import local_model_path
    from deploystudio.registry import Registry

    spec = spec_from_options(args.kind, _options(args.options), _code(args))
    # With --json, stdout carries only the JSON document.
    out = sys.stderr if args.json else sys.stdout

    def progress(message: str) -> None:
        print(message, file=out, flush=True)

    registry = Registry(settings.tracking_uri, settings.registry_uri)
    source_uri = _resolved_uri(args.model_uri, registry)
    model_path = local_model_path(source_uri, settings, registry)
    progress(f"Building the {spec.kind.value} wrapper of {source_uri} and checking it")
    preview = build_wrapped_model(model_path, spec, work_folder(settings.home))
    try:
        progress(f"Built in {preview.seconds:.1f} s. On the input example:")
        progress(_side_by_side(preview.original, preview.wrapped))
        registered = register_wrapped_model(
            settings, registry, preview, source_uri, spec, args.register_as, progress
        )
    finally:
        shutil.rmtree(preview.saved_path.parent, ignore_errors=True)
    if args.json:
        document = {
            **to_jsonable(registered),
            "signature": preview.signature,
            "original": to_jsonable(preview.original.to_dict(orient="records")),
            "wrapped": to_jsonable(preview.wrapped.to_dict(orient="records")),
        }
        print(json.dumps(document, indent=2, default=str))
    else:
        print(registered.model_uri)
    return 0


def _options(text: str | None) -> dict:
    if not text:
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise WrapError(f"--options is not valid JSON ({exc.msg} at character {exc.pos}).") from exc


def _code(args: argparse.Namespace) -> str:
    if args.code is None:
        if args.kind == "custom":
            raise WrapError("--kind custom needs --code FILE with your PythonModel class.")
        return ""
    if args.kind != "custom":
        raise WrapError("--code is for --kind custom only.")
    try:
        return Path(args.code).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise WrapError(f"Cannot read {args.code}: {exc}") from exc


def _resolved_uri(uri: str, registry) -> str:
    """The lineage tag names a fixed version: an alias is resolved to the version it points at."""
    from deploystudio.model_uri import ModelUriKind, parse_model_uri, registered_version_uri

    reference = parse_model_uri(uri)
    if reference.kind is ModelUriKind.REGISTERED_ALIAS:
        version = registry.resolve_alias(reference.name, reference.alias)
        return registered_version_uri(reference.name, version)
    if reference.kind is ModelUriKind.LOCAL_FOLDER:
        return str(reference.local_path)
    return reference.uri


def _side_by_side(original, wrapped) -> str:
    import pandas as pd

    frame = pd.concat([original.add_prefix("original: "), wrapped.add_prefix("wrapped: ")], axis=1)
    return frame.to_string()
