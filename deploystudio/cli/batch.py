"""`deploystudio batch run|list|show|cancel|export`: local batch jobs from a terminal."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from deploystudio.cli.options import add_action, add_env_option
from deploystudio.config import Settings
from deploystudio.jsonable import to_jsonable

EXIT_FAILED = 1


def _print_json(value: Any) -> None:
    print(json.dumps(to_jsonable(value), indent=2, default=str))


def _line(job) -> str:
    finished = job.files_done + job.files_failed
    line = f"{job.state.value}: {finished}/{job.files_total} file(s) ({job.files_failed} failed"
    if job.finished and finished < job.files_total:
        # A job that stopped early (its model did not load, a cancel) left files unscored.
        line += f", {job.files_total - finished} not scored"
    return line + f"), {job.rows_done} row(s)"


def _settings(args: argparse.Namespace):
    from deploystudio.deployment.batch.settings import BatchSettings

    values = {
        "mini_batch_size": args.mini_batch_size,
        "max_concurrency_per_instance": args.workers,
        "output_action": args.output_action,
        "output_file_name": args.output_file_name,
        "error_threshold": args.error_threshold,
        "max_retries": args.max_retries,
        "timeout": args.timeout,
        "chunk_rows": args.chunk_rows,
    }
    return BatchSettings(**{k: v for k, v in values.items() if v is not None})


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from deploystudio.deployment.batch.jobs import start_batch_job, wait_for_batch_job

    out = sys.stderr if args.json else sys.stdout

    def building(line: str) -> None:  # the model environment's build, when it is built now
        print(f"  {line}", file=sys.stderr, flush=True)

    job = start_batch_job(
        settings,
        args.model_uri,
        args.input,
        batch_settings=_settings(args),
        bundle=args.bundle,
        output_dir=args.output,
        restrict_input=False,  # a local user may read any path, as `mlflow models predict` does
        env=args.env,
        progress=building,
    )
    print(f"environment: {_environment_line(job)}", file=out, flush=True)
    if args.detach:
        if args.json:
            _print_json(job.as_dict())
        else:
            print(f"Started batch job {job.id}: deploystudio batch show {job.id}")
        return 0
    print(f"Batch job {job.id} started (Ctrl-C cancels it).", file=out, flush=True)
    shown = [""]

    def progress(current) -> None:
        line = _line(current)
        if line != shown[0]:
            shown[0] = line
            print(f"  {line}", file=out, flush=True)

    try:
        job = wait_for_batch_job(settings, job.id, progress=progress)
    except KeyboardInterrupt:
        from deploystudio.deployment.batch.jobs import cancel_batch_job

        job = cancel_batch_job(settings, job.id)
    return _report(job, args.json)


def _environment_line(job) -> str:
    environment = job.environment or {}
    return environment.get("reason") or "The app's environment."


def _report(job, as_json: bool) -> int:
    # A job that scored none of its files failed, whatever error_threshold let it complete.
    scored_none = job.files_total > 0 and job.files_done == 0
    code = 0 if job.state.value == "completed" and not scored_none else EXIT_FAILED
    if as_json:
        _print_json(job.as_dict())
        return code
    print(f"Job {job.id} {job.state.value}" + (f": {job.reason}" if job.reason else "."))
    summary = job.summary or {}
    if summary:
        rate = summary.get("rows_per_second")
        print(
            f"{summary['files_succeeded']} file(s) scored, {summary['files_failed']} failed, "
            f"{summary['rows']} row(s) in {summary['seconds']:.1f} s"
            + (f" ({rate:,.0f} rows/s)" if rate else "")
        )
        for failed in summary["failed_files"]:
            print(f"  failed: {failed['error']}")
        if summary.get("not_scored_files"):
            print(f"  not scored: {', '.join(summary['not_scored_files'])}")
    if job.output_path is not None and job.output_path.is_file() and job.files_done:
        print(f"Predictions: {job.output_path}")
    elif scored_none:
        print("No file was scored, so no predictions file was written.")
    return code


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    from deploystudio.deployment.batch.jobs import list_batch_jobs

    jobs = list_batch_jobs(settings, args.limit)
    if args.json:
        _print_json([job.as_dict() for job in jobs])
        return 0
    if not jobs:
        print("No batch jobs yet: deploystudio batch run MODEL_URI --input PATH --output DIR")
        return 0
    for job in jobs:
        print(f"{job.id}  {job.created_at:%Y-%m-%d %H:%M}  {job.model_uri}  {_line(job)}")
    return 0


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    from deploystudio.deployment.batch.jobs import batch_job_files, batch_summary, get_batch_job

    job = get_batch_job(settings, args.job_id)
    if args.json:
        values = job.as_dict()
        values["summary"] = batch_summary(settings, job.id)
        values["files"] = [
            {"file": f.name, "state": f.state.value, "rows": f.rows, "error": f.error}
            for f in batch_job_files(settings, job.id)
        ]
        _print_json(values)
        return 0
    print(f"Model: {job.model_uri}" + (f" with bundle {job.bundle}" if job.bundle else ""))
    print(f"Input: {job.input_path}")
    print(f"Environment: {_environment_line(job)}")
    print(f"Progress: {_line(job)}")
    if job.finished:
        _report(job, as_json=False)
    return 0


def cmd_cancel(args: argparse.Namespace, settings: Settings) -> int:
    from deploystudio.deployment.batch.jobs import cancel_batch_job

    job = cancel_batch_job(settings, args.job_id)
    if args.json:
        _print_json(job.as_dict())
    else:
        print(f"Job {job.id} {job.state.value}" + (f": {job.reason}" if job.reason else "."))
    return 0


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from deploystudio.deployment.batch.jobs import (
        batch_deployment,
        batch_deployment_yaml,
        batch_endpoint_yaml,
        get_batch_job,
    )

    job = get_batch_job(settings, args.job_id)
    deployment = batch_deployment(job.settings, job.model_uri, args.endpoint, args.deployment)
    print(batch_endpoint_yaml(args.endpoint), end="")
    print("---")
    print(batch_deployment_yaml(deployment), end="")
    return 0


def add_batch_commands(commands: argparse._SubParsersAction) -> None:
    """Add `batch ...` to the `deploystudio` parser."""
    batch = commands.add_parser("batch", help="batch jobs: score files as Azure ML batch does")
    actions = batch.add_subparsers(dest="batch_command", required=True)

    run = actions.add_parser(
        "run",
        help="score a file or a folder of .csv/.parquet files",
        description=(
            "Score a .csv/.parquet file, or the files of a folder (sub-folders are ignored), "
            "with Azure ML batch deployment semantics; predictions go to DIR/predictions.csv. "
            "Any path you can read may be given, as with `mlflow models predict` (the Batch "
            "page only reads folders under DEPLOYSTUDIO_BATCH_INPUT_ROOTS)."
        ),
    )
    run.add_argument("model_uri", help="models:/NAME/VERSION, models:/NAME@ALIAS or a folder")
    run.add_argument("--input", required=True, help="a .csv/.parquet file or a folder of them")
    run.add_argument("--output", required=True, help="the folder for predictions.csv")
    run.add_argument("--bundle", help="score with this bundle's batch script (NAME:VERSION)")
    run.add_argument("--mini-batch-size", type=int, help="files per mini-batch (default 10)")
    run.add_argument("--workers", type=int, help="worker processes (default 1)")
    run.add_argument("--output-action", choices=["append_row", "summary_only"])
    run.add_argument("--output-file-name", help="default predictions.csv")
    run.add_argument(
        "--error-threshold", type=int, help="failed files tolerated; -1 (default) for all"
    )
    run.add_argument("--max-retries", type=int, help="per timed-out mini-batch (default 3)")
    run.add_argument("--timeout", type=int, help="seconds per mini-batch (default 30)")
    run.add_argument("--chunk-rows", type=int, help="rows read at a time (default 100000)")
    add_env_option(run)
    run.add_argument("--detach", action="store_true", help="return once the job has started")
    run.add_argument("--json", action="store_true")
    run.set_defaults(handler=cmd_run)

    listing = add_action(actions, "list", "the newest batch jobs", cmd_list)
    listing.add_argument("--limit", type=int, default=50)
    add_action(actions, "show", "one job: progress, summary and failed files", cmd_show, "job_id")
    add_action(actions, "cancel", "stop a job; what it finished is kept", cmd_cancel, "job_id")

    export = actions.add_parser(
        "export", help="a job's settings as Azure ML batch endpoint + deployment YAML"
    )
    export.add_argument("job_id")
    export.add_argument("--endpoint", required=True, help="the Azure batch endpoint's name")
    export.add_argument("--deployment", default="default", help="the deployment's name")
    export.set_defaults(handler=cmd_export)
