"""What model code may see of the app: the environment passed to every process that runs it."""

from __future__ import annotations

import os
import re

# Variables the model process must not see: cloud credentials, registry credentials, tokens.
_SECRET_NAME = re.compile(
    r"(SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|API_?KEY|ACCESS_?KEY|PRIVATE|^AZURE_|^AWS_|"
    r"^GOOGLE_|^MLFLOW_TRACKING_(URI|USERNAME|PASSWORD|TOKEN)$|^DATABRICKS_)",
    re.IGNORECASE,
)

def scrubbed_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    source = os.environ if environ is None else environ
    return {k: v for k, v in source.items() if not _SECRET_NAME.search(k)}
