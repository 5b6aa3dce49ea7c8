"""How scoring bundles are offered on Deploy, Batch and Azure ML: a bundle that did not pass
validation when it was saved is never chosen for the user, reads "not validated" wherever it
is named, and shows a warning when the user chooses it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

import streamlit as st

from deploystudio.customization.bundles import Bundle

NOT_VALIDATED = "not validated"


def unvalidated_labels(bundles: Iterable[Bundle]) -> set[str]:
    """The "name:version" labels of the bundles saved without passing validation."""
    return {b.label for b in bundles if not b.validated}


def marked(label: str, unvalidated: Collection[str]) -> str:
    """`label`, with "(not validated)" when that bundle did not pass validation."""
    return f"{label} ({NOT_VALIDATED})" if label in unvalidated else label


def warn_if_unvalidated(label: str | None, unvalidated: Collection[str]) -> None:
    """A warning under the select when the chosen bundle did not pass validation."""
    if label and label in unvalidated:
        st.warning(
            f"Bundle {label} was saved without passing validation: its score.py may fail to "
            "start or answer. Validate it on the Customize page and save it again, or go on "
            "knowing it is untested.",
            icon=":material/warning:",
        )
