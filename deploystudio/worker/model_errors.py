"""What an exception raised by a model's own code says about its cause, in words a user acts
on. Standard library only: it runs in the worker, in the app's or a model's own environment."""

from __future__ import annotations

import re

# A missing credential: the messages of OpenAI's, Azure's, Anthropic's and cloud SDKs' clients
# when no key is set, and HTTP's refusals.
# (Not "Permission denied": that is what the sandbox answers a model reading outside its roots.)
_CREDENTIAL = re.compile(
    r"api[_ ]?key|OPENAI_API_KEY|AZURE_\w*KEY|credential|Unauthorized|"
    r"(?:Error code|status(?: code)?)[: ]+40[13]\b|authenticat|access token|NoCredentialsError",
    re.IGNORECASE,
)
# A service out of reach (the exception's class names, and its text).
_UNREACHABLE_TYPES = re.compile(
    r"Connection|Timeout|NameResolution|MaxRetry|APIConnectionError|gaierror", re.IGNORECASE
)
_UNREACHABLE = re.compile(
    r"Connection refused|Name or service not known|Temporary failure in name resolution|"
    r"timed out|Failed to establish a new connection|Max retries exceeded|Network is unreachable",
    re.IGNORECASE,
)


def _names(exc: BaseException) -> str:
    return " ".join(f"{k.__module__}.{k.__qualname__}" for k in type(exc).__mro__)


def external_cause(exc: BaseException) -> str | None:
    """A sentence naming a missing credential or an unreachable service, or None."""
    text = f"{_names(exc)}: {exc}"
    if _CREDENTIAL.search(text):
        return (
            "The model's own code needs a credential it did not get (an API key or a token): "
            "model code gets only allow-listed environment variables, so name the variable in "
            "the deployment's environment variables, or give the key to the model another way. "
            "The input is not the cause."
        )
    if _UNREACHABLE_TYPES.search(_names(exc)) or _UNREACHABLE.search(str(exc)):
        return (
            "The model's own code could not reach a service it calls (a connection failed or "
            "timed out): check that the service is up and reachable from this machine. The "
            "input is not the cause."
        )
    return None
