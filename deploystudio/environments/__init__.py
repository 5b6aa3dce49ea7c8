"""Model environments: what a model needs installed (plan), built with uv (build), and the
environments in the data folder (catalog).

    inputs = PlanInputs.from_folder(model_dir)            # or PlanInputs.from_texts(...)
    plan = plan_environment(inputs, environments_root(settings.home))
    environment = ensure(plan, settings.home, progress=print)
    subprocess.run([environment.python, ...])

    lookup(inputs, settings.home)   # the ready environment or None, fast: no uv, no network
"""

from deploystudio.environments.build import (
    Environment,
    ensure,
    environments_root,
    lookup,
    lookup_key,
)
from deploystudio.environments.plan import (
    Choice,
    EnvironmentPlan,
    PlannedRequirement,
    PythonChoice,
    compute_plan,
    plan_environment,
)
from deploystudio.environments.sources import PlanInputs

__all__ = [
    "Choice",
    "Environment",
    "EnvironmentPlan",
    "PlanInputs",
    "PlannedRequirement",
    "PythonChoice",
    "compute_plan",
    "ensure",
    "environments_root",
    "lookup",
    "lookup_key",
    "plan_environment",
]
