"""WorldFlux: learned simulators from logged RL data.

Public API (stable): the world-model contract and its payloads, the registry and factory,
serialization, and the data/planner contracts. Subpackages hold the rest.

PyTorch is optional at run time: without it, ``import worldflux`` still registers the env cards,
and dream environments run from exported artifacts on ONNX Runtime (``backend="onnx"``); the
torch-only names then raise :class:`worldflux.core.errors.TorchMissingError`. Where torch is
installed it is imported on first use of a torch-only name, never by ``import worldflux``.
"""

from typing import TYPE_CHECKING, Any

from . import _threads  # noqa: F401  (first: OpenMP's wait policy is read when torch loads)
from ._optional import lazy_attribute, torch_available
from ._version import __version__
from .core.errors import WorldFluxError
from .core.noise import NoiseSpec
from .dream.make import make_dream_env

if TYPE_CHECKING:  # what the lazy names are, for type checkers and IDEs
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

#: the torch-only public names and the modules they come from (imported on first use)
_TORCH_ONLY_SOURCES = {
    name: ".core.plugins" if name == "load_plugins" else ".core"
    for name in __all__
    if name not in {"NoiseSpec", "WorldFluxError", "__version__", "make_dream_env"}
}
if not torch_available():  # star-imports and tools that walk __all__ see what exists
    __all__ = [name for name in __all__ if name not in _TORCH_ONLY_SOURCES]


def __getattr__(name: str) -> Any:
    """The torch-only names, imported on first use: ``import worldflux`` does not load torch.
    The built-in families and plugins register on the registry's first lookup."""
    return lazy_attribute(__name__, _TORCH_ONLY_SOURCES, name)


def _register_real_envs() -> None:
    """Register the project's real benchmark environments (:mod:`worldflux.envs`)."""
    from .envs import register_envs

    register_envs()


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
_register_real_envs()
