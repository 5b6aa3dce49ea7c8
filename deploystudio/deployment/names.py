"""Azure's naming rule for online endpoints and deployments, shared by every target."""

from __future__ import annotations

import re

from deploystudio.errors import InvalidNameError

MIN_LENGTH = 3
MAX_LENGTH = 32

# azure-ai-ml checks `^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$` and 3-32 characters
# (entities/_endpoint/_endpoint_helpers.py); Azure's limits table ("how-to-manage-quotas") only
# accepts single dashes, so "a--b" is refused here too. The SDK's own check is not called because
# importing azure.ai.ml takes about 6 s, and it would let double dashes through.
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)*")

NAME_RULE = (
    f"names are {MIN_LENGTH}-{MAX_LENGTH} characters, start with a letter, contain only "
    "letters, digits and single dashes, and end with a letter or digit (Azure's rule)"
)


def validate_name(name: str, what: str = "endpoint") -> str:
    """Return `name` unchanged if it is a valid Azure endpoint/deployment name.

    Raises InvalidNameError quoting the rule otherwise. Names are compared case-insensitively by
    the store, as Azure does (an endpoint name becomes part of a DNS host name).
    """
    if not isinstance(name, str):
        raise InvalidNameError(f"The {what} name must be text, not {type(name).__name__}.")
    if not MIN_LENGTH <= len(name) <= MAX_LENGTH or not _NAME.fullmatch(name):
        shown = name if len(name) <= 60 else name[:57] + "..."
        raise InvalidNameError(
            f"{what.capitalize()} name {shown!r} is not valid: {what} {NAME_RULE}. "
            f"Choose a name such as 'my-{what}-1'."
        )
    return name
