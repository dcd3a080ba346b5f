"""WorldFlux: learned simulators from logged RL data.

Public API (stable): the world-model contract and its payloads, the registry and factory,
serialization, and the data/planner contracts. Subpackages hold the rest.

PyTorch is optional at run time: without it, ``import worldflux`` still registers the env cards,
and dream environments run from exported artifacts on ONNX Runtime (``backend="onnx"``); the
torch-only names then raise :class:`worldflux.core.errors.TorchMissingError`.
"""

from typing import Any

from . import _threads  # noqa: F401  (first: OpenMP's wait policy is read when torch loads)
from ._optional import missing_attribute, torch_available
from ._version import __version__
from .core.errors import WorldFluxError
from .core.noise import NoiseSpec
from .dream.make import make_dream_env

if torch_available():
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
        PlannerOutput,
        State,
        Trajectory,
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
    "make_dream_env",
]


_TORCH_FREE = {"NoiseSpec", "WorldFluxError", "__version__", "make_dream_env"}


_TORCH_ONLY = frozenset(__all__) - _TORCH_FREE
if not torch_available():  # star-imports and tools that walk __all__ see what exists
    __all__ = sorted(set(__all__) & _TORCH_FREE)


def __getattr__(name: str) -> Any:
    raise missing_attribute(__name__, _TORCH_ONLY, name)


if torch_available():
    from . import models as _builtin_families  # noqa: F401  (registers dreamerv3, planet, ensemble)

    # Third-party families and components (entry points); failures only warn.
    load_plugins()


def _register_env_cards() -> None:
    """Register the dream environments of the env cards (``envs/*.toml``) with gymnasium; a
    broken card only warns, so ``import worldflux`` keeps working."""
    import warnings

    from .dream.make import register_cards

    try:
        register_cards()
    except WorldFluxError as exc:
        warnings.warn(f"worldflux: env cards not registered: {exc}", stacklevel=2)


_register_env_cards()
