"""Errors a user can cause or fix. Pages show their message with st.error; the CLI prints it."""


class DeployStudioError(Exception):
    """Base class: the message says what went wrong and what to do about it."""


class RegistryUnavailableError(DeployStudioError):
    """The MLflow tracking/registry server did not answer."""


class ModelNotFoundError(DeployStudioError):
    """A registered model, version, alias or run that does not exist."""


class InvalidModelUriError(DeployStudioError):
    """A model URI that is not of a form Deploy Studio understands."""


class InvalidModelError(DeployStudioError):
    """A model folder without an MLmodel file, or one MLflow cannot read."""


class UnsafePathError(DeployStudioError):
    """A path that would lead outside the folder it must stay in."""


class PayloadError(DeployStudioError):
    """A request body or file that cannot be read as model input, or does not fit the model."""


class PredictionError(DeployStudioError):
    """The input does not fit the model, or the model raised while predicting."""


class PredictionWorkerError(DeployStudioError):
    """The prediction worker crashed, hung or ran out of memory; it is restarted on next use."""
