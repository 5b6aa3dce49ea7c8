"""`deploystudio script new|validate`: a scoring script and its environment in a folder, and the
same validation the Customize page runs (the real inference server on 127.0.0.1)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from deploystudio.cli.options import add_env_option
from deploystudio.config import Settings
from deploystudio.errors import DeployStudioError
from deploystudio.jsonable import to_jsonable

SCRIPT_FILE = "score.py"
CONDA_FILE = "conda.yaml"
IMAGE_FILE = "image.txt"
REQUEST_FILE = "sample-request.json"


def add_script_command(commands: argparse._SubParsersAction) -> None:
    from deploystudio.customization.scoring_script import ScriptTemplate

    script = commands.add_parser("script", help="scoring scripts: generate and validate")
    actions = script.add_subparsers(dest="script_command", required=True)

    new = actions.add_parser(
        "new", help="write score.py, conda.yaml, image.txt and a sample request into a folder"
    )
    new.add_argument("model_uri", help="models:/NAME/VERSION, models:/NAME@ALIAS or a folder")
    new.add_argument("--out", required=True, help="folder to write (created; never overwritten)")
    new.add_argument(
        "--template", choices=[t.value for t in ScriptTemplate], default=ScriptTemplate.NO_CODE
    )
    new.set_defaults(handler=cmd_script_new)

    validate = actions.add_parser(
        "validate", help="serve DIR/score.py with the model on 127.0.0.1 and score a request"
    )
    validate.add_argument("folder", help="a folder with score.py (as written by `script new`)")
    validate.add_argument("--model", required=True, help="the model the script serves")
    validate.add_argument(
        "--request", help=f"request body file (default: FOLDER/{REQUEST_FILE}, else the example)"
    )
    validate.add_argument("--batch", action="store_true", help="the script is a batch variant")
    validate.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (120)")
    add_env_option(validate)
    validate.add_argument("--json", action="store_true")
    validate.set_defaults(handler=cmd_script_validate)


def _model_path(uri: str, settings: Settings) -> Path:
    from deploystudio.prediction import local_model_path

    return local_model_path(uri, settings)


def cmd_script_new(args: argparse.Namespace, settings: Settings) -> int:
    from deploystudio.customization.scoring_script import (
        ScriptTemplate,
        example_request,
        generate_scoring_script,
    )
    from deploystudio.customization.script_environment import generate_environment

    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise DeployStudioError(f"'{out}' is not empty: choose a new folder (nothing is replaced).")
    model_path = _model_path(args.model_uri, settings)
    template = ScriptTemplate(args.template)
    files = {
        SCRIPT_FILE: generate_scoring_script(template, model_path),
        CONDA_FILE: (environment := generate_environment(model_path)).conda_yaml,
        IMAGE_FILE: environment.base_image + "\n",
    }
    if not template.is_batch:
        try:
            files[REQUEST_FILE] = json.dumps(example_request(model_path), indent=2) + "\n"
        except DeployStudioError as exc:
            print(f"note: no {REQUEST_FILE} written: {exc}", file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
    print(f"Wrote {', '.join(files)} to {out} ({template} template for {args.model_uri}).")
    print(f"Validate: deploystudio script validate {out} --model {args.model_uri}")
    return 0


def cmd_script_validate(args: argparse.Namespace, settings: Settings) -> int:
    from deploystudio.customization.scoring_script import (
        example_request,
        validate_batch_script,
        validate_scoring_script,
    )

    folder = Path(args.folder)
    script_path = folder / SCRIPT_FILE
    if not script_path.is_file():
        raise DeployStudioError(f"'{folder}' has no {SCRIPT_FILE}: write one with `script new`.")
    source = script_path.read_text(encoding="utf-8")
    model_path = _model_path(args.model, settings)
    out = sys.stderr if args.json else sys.stdout
    work_dir = settings.home / "work" / "customize"

    def progress(message: str) -> None:
        print(message, file=out, flush=True)

    from deploystudio.environments.choice import EnvModeError, choose
    from deploystudio.inference_server import SERVER_REQUIREMENTS

    if args.batch and args.env == "model":
        raise EnvModeError("--batch validates in the app's environment: use --env app or auto.")
    chosen = choose(
        "app" if args.batch else args.env,
        model_path,
        settings.home,
        progress=progress,
        # The inference server runs in the model's environment, as on Azure: it is added there.
        extra_requirements=SERVER_REQUIREMENTS,
    )
    print(f"environment: {chosen.reason}", file=out, flush=True)

    if args.batch:
        import mlflow

        example = mlflow.models.Model.load(str(model_path)).load_input_example(str(model_path))
        if example is None:
            raise DeployStudioError("The model has no input example to run the batch script on.")
        result = validate_batch_script(
            source, model_path, example, work_dir, args.timeout, progress
        )
    else:
        request_path = Path(args.request) if args.request else folder / REQUEST_FILE
        if request_path.is_file():
            body = request_path.read_text(encoding="utf-8")
        elif args.request:
            raise DeployStudioError(f"The request file '{request_path}' does not exist.")
        else:
            body = example_request(model_path)
        result = validate_scoring_script(
            source,
            model_path,
            body,
            work_dir,
            args.timeout,
            progress,
            read_roots=chosen.read_roots,
            python=chosen.python_for_worker,
        )
    if args.json:
        values = to_jsonable(result)
        values["environment"] = {
            "mode": chosen.mode.value,
            "key": chosen.environment.key if chosen.environment else None,
            "reason": chosen.reason,
        }
        print(json.dumps(values, indent=2))
    else:
        print(("OK: " if result.ok else f"FAILED at {result.stage}: ") + result.message)
        if result.response is not None:
            print(json.dumps(to_jsonable(result.response), indent=2))
        if not result.ok and result.log_tail:
            print("\nServer log (last lines):\n" + result.log_tail)
    return 0 if result.ok else 1
