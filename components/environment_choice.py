"""The environment choice of a page that runs a model (issue 19): the auto/model/app control,
and a status box showing a model environment's build while it happens."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import streamlit as st

from deploystudio.environments.choice import ENV_MODES, EnvMode

ENV_LABELS = {"auto": "Auto", "model": "Model's own", "app": "This app's"}
ENV_HELP = (
    "Auto runs the model in the app's environment when it has every version the model's loader "
    "asks for, and in the model's own (built with uv on first use) otherwise."
)


def render_env_mode(key: str) -> str:
    """auto, model or app, as the user chose (auto by default)."""
    return (
        st.segmented_control(
            "Environment",
            ENV_MODES,
            default=EnvMode.AUTO.value,
            format_func=ENV_LABELS.get,
            key=key,
            help=ENV_HELP,
        )
        or EnvMode.AUTO.value
    )


@contextmanager
def environment_status(
    mode: str, failed_label: str = "The model's environment could not be made"
) -> Iterator[Callable[[str], None]]:
    """A status box for the choice (it builds the model's environment the first time, which
    takes a minute or more); yields the progress callback to give `choose`."""
    if mode == EnvMode.APP.value:
        yield lambda line: None
        return
    with st.status("Choosing the environment…", expanded=False) as status:
        lines: list[str] = []
        shown = st.empty()

        def progress(line: str) -> None:
            if not lines:
                status.update(label="Building the model's environment…", expanded=True)
            lines.append(line)
            shown.code("\n".join(lines[-12:]), language=None)

        try:
            yield progress
        except Exception:
            status.update(label=failed_label, state="error")
            raise
        status.update(label="Environment chosen", state="complete", expanded=False)
