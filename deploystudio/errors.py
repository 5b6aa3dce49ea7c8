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


class ScoringServerError(DeployStudioError):
    """The Azure ML inference server did not start, did not become ready, or stopped."""


class ScriptSyntaxError(DeployStudioError):
    """A scoring script that is not valid Python; the message gives the line and column."""


class ScriptTemplateError(DeployStudioError):
    """A scoring-script template that does not apply to the chosen model."""


class BundleError(DeployStudioError):
    """A scoring bundle name, version or content that cannot be saved, found or exported."""


class WrapError(DeployStudioError):
    """A wrapper that cannot be built, validated or registered (nothing is left half-registered)."""


class InvalidNameError(DeployStudioError):
    """An endpoint or deployment name that breaks Azure's naming rule; the message quotes it."""


class NameTakenError(DeployStudioError):
    """An endpoint or deployment name that is already in use."""


class EndpointNotFoundError(DeployStudioError):
    """An endpoint that the deployment store does not know."""


class DeploymentNotFoundError(DeployStudioError):
    """A deployment that its endpoint does not have."""


class TrafficError(DeployStudioError):
    """Traffic weights or a mirror setting that break the traffic rules."""


class StateTransitionError(DeployStudioError):
    """A lifecycle change that is not allowed from the record's current state."""


class ResourceInUseError(DeployStudioError):
    """An endpoint or deployment that cannot be deleted yet: it still runs or still gets traffic."""


class EndpointAuthError(DeployStudioError):
    """A key operation on an endpoint whose auth mode has no keys, or an unknown auth mode."""


class DeploymentConfigError(DeployStudioError):
    """A deployment setting that is not valid (runtime, bundle, model URI, settings)."""


class UnsupportedError(DeployStudioError):
    """The target does not offer this (see DeploymentTarget.capabilities)."""


class EndpointFrontError(DeployStudioError):
    """An endpoint's front process that cannot start: its port is taken, its store is missing,
    or it was asked to listen on an address other than loopback."""


class OperationInProgressError(DeployStudioError):
    """A change to an endpoint while another change to it is still running (who and since when)."""


class BatchSettingsError(DeployStudioError):
    """A batch job setting out of its range (mini_batch_size, workers, retries, output action)."""


class BatchInputError(DeployStudioError):
    """A batch job's input or output path that is missing, empty, outside the allowed folders,
    or that would overwrite earlier predictions."""


class BatchJobNotFoundError(DeployStudioError):
    """A batch job id that the deployment store does not know."""


class RolloutError(DeployStudioError):
    """An endpoint whose traffic does not fit a safe rollout from one deployment to another."""


class AzureWorkspaceError(DeployStudioError):
    """An Azure ML workspace that is not fully named (subscription, resource group, workspace),
    or a secrets.toml / config.json that cannot be read."""


class AzureConnectionError(DeployStudioError):
    """No credential could sign in to Azure, or the workspace could not be read with it."""


class AzureSpecError(DeployStudioError):
    """An Azure ML endpoint or deployment setting that azure-ai-ml or Azure would refuse
    (auth mode, instance type or count, probes, request settings, model reference)."""


class AzureExportError(DeployStudioError):
    """An Azure ML export folder that cannot be written, or whose YAML azure-ai-ml cannot load."""


class AzureOperationError(DeployStudioError):
    """An Azure ML call or long-running operation that failed; the message gives Azure's error
    code and what to do."""


class AzureImageBuildError(AzureOperationError):
    """Azure could not build the deployment's environment image (ImageBuildFailure)."""


class AzureQuotaError(AzureOperationError):
    """The subscription has no quota left for the instance type and count asked for."""


class AzureNotReadyError(AzureOperationError):
    """A deployment whose container did not become ready (ResourceNotReady); has the log tail."""


class AzurePermissionError(AzureOperationError):
    """Signed in, but the identity lacks a role on the workspace (403)."""


class AzureConflictError(OperationInProgressError):
    """Azure refused a change because another operation on the endpoint is running (409)."""


class AzureOperationCanceledError(AzureOperationError):
    """A long-running Azure operation that was canceled before it finished."""


class AzureThrottledError(AzureOperationError):
    """Azure kept answering 429 (too many requests) after the SDK's own retries."""


class AzureBatchInputError(BatchInputError):
    """A batch endpoint input Azure cannot read: a local path (upload it to a datastore
    first) or an address that is neither `azureml://` nor `https://`."""


class AzureBatchJobStateError(AzureOperationError):
    """A batch job's predictions asked for before the job completed, or a completed job with
    no predictions output to download."""


class RolesConfigError(DeployStudioError):
    """The `[deploystudio.roles]` table in secrets.toml is not a mapping of user emails (or
    `default`) to viewer, builder or deployer."""


class AccessDeniedError(DeployStudioError):
    """The signed-in user's role does not allow the change asked for (e.g. a viewer deploying)."""


class RequirementsRefusedError(DeployStudioError):
    """A model's requirement files hold lines that would choose a package index, include other
    files, or install from a URL, a VCS or a local path: nothing is installed from them."""


class PackageIndexUnreachableError(DeployStudioError):
    """The package index (PyPI or the one configured for pip/uv) did not answer."""


class EnvironmentBlockedError(DeployStudioError):
    """A model environment that cannot be built here: a requirement the model's loader imports
    has no release installable on this machine's Python."""


class EnvironmentBuildError(DeployStudioError):
    """uv failed to create or fill a model environment; the message names the build log."""
