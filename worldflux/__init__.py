"""WorldFlux: learned simulators from logged RL data.

Public API (stable): the world-model contract and its payloads, the registry and factory,
serialization, and the data/planner contracts. Subpackages hold the rest.
"""

from ._version import __version__
from .core import (
    PLANNER_HORIZON_KEY,
    ActionPayload,
    Batch,
    BatchProvider,
    BatchProviderV2,
    BatchRequest,
    ComponentRegistry,
    ConditionPayload,
    LossOutput,
    ModelOutput,
    NoiseSpec,
    PlannerOutput,
    State,
    Trajectory,
    WorldFluxError,
    WorldModel,
    WorldModelConfig,
    WorldModelInput,
    WorldModelRegistry,
    create_world_model,
    load_pretrained,
)
from .core.plugins import load_plugins

__all__ = [
    "PLANNER_HORIZON_KEY",
    "ActionPayload",
    "Batch",
    "BatchProvider",
    "BatchProviderV2",
    "BatchRequest",
    "ComponentRegistry",
    "ConditionPayload",
    "LossOutput",
    "ModelOutput",
    "NoiseSpec",
    "PlannerOutput",
    "State",
    "Trajectory",
    "WorldFluxError",
    "WorldModel",
    "WorldModelConfig",
    "WorldModelInput",
    "WorldModelRegistry",
    "__version__",
    "create_world_model",
    "load_plugins",
    "load_pretrained",
]

from . import models as _builtin_families  # noqa: F401  (registers dreamerv3, planet, ensemble)

# Third-party families and components (entry points); failures only warn.
load_plugins()


def _register_env_cards() -> None:
    """Register the dream environments of the env cards (``envs/*.toml``) with gymnasium; a
    broken card only warns, so ``import worldflux`` keeps working."""
    import warnings

    from .core.errors import WorldFluxError
    from .dream.make import register_cards

    try:
        register_cards()
    except WorldFluxError as exc:
        warnings.warn(f"worldflux: env cards not registered: {exc}", stacklevel=2)


_register_env_cards()
