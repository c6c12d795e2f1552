"""The build: Modelfile → plan (FROM resolved through a source, each layer inherited, cached
or new) → execute (blobs, config, then the manifest, atomically)."""

from modelkit.build.cache import BuildCache
from modelkit.build.execute import BuildResult, CheckFn, ProgressFn, execute_build
from modelkit.build.layers import PlannedLayer
from modelkit.build.plan import BuildPlan, Planner, plan_build
from modelkit.build.spec import BuildSpec, spec_from_modelfile

__all__ = [
    "BuildCache",
    "BuildPlan",
    "BuildResult",
    "BuildSpec",
    "CheckFn",
    "PlannedLayer",
    "Planner",
    "ProgressFn",
    "execute_build",
    "plan_build",
    "spec_from_modelfile",
]
