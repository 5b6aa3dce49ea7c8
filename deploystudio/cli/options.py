"""Options shared by several commands."""

from __future__ import annotations

import argparse


def add_env_option(parser: argparse.ArgumentParser) -> None:
    """`--env auto|model|app`: which environment runs the model (issue 19)."""
    parser.add_argument(
        "--env",
        choices=["auto", "model", "app"],
        default="auto",
        help="where the model runs: its own environment (model), the app's (app), or the app's "
        "when it already has every version the model's loader asks for (auto, the default)",
    )
