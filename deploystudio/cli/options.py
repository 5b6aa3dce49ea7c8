"""Options shared by several commands."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def add_env_option(parser: argparse.ArgumentParser) -> None:
    """`--env auto|model|app`: which environment runs the model (issue 19)."""
    parser.add_argument(
        "--env",
        choices=["auto", "model", "app"],
        default="auto",
        help="where the model runs: its own environment (model), the app's (app), or the app's "
        "when it already has every version the model's loader asks for (auto, the default)",
    )


def add_action(
    actions: argparse._SubParsersAction,
    name: str,
    help: str,
    handler: Callable[..., int],
    *positionals: str,
    json_output: bool = True,
) -> argparse.ArgumentParser:
    """Sub-command `name` of a command group: its positional arguments, `--json` when it
    prints records, and its handler. Returns it for options of its own."""
    parser = actions.add_parser(name, help=help)
    for positional in positionals:
        parser.add_argument(positional)
    if json_output:
        parser.add_argument("--json", action="store_true")
    parser.set_defaults(handler=handler)
    return parser
