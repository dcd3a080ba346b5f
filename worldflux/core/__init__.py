"""Core contracts: payloads, config, the WorldModel ABC, components, latent spaces, registry,
plugins and serialization. Everything else in WorldFlux builds on this package.
Without PyTorch only the errors and the noise specs are importable (the ONNX dream runtime needs
no more); the rest then raises :class:`worldflux.core.errors.TorchMissingError`.
"""

from typing import Any

from .._optional import missing_attribute, torch_available
from .errors import (
    ConfigError,
    ContractError,
    PluginError,
    RegistryError,
    SerializationError,
    WorldFluxError,
)
from .noise import NoiseSpec, sample_noise_numpy, sample_noise_torch

if torch_available():
    from .batch_provider import BatchProvider, BatchProviderV2, BatchRequest
    from .components import (
        ROLES,
        ActionConditioner,
        ComponentRegistry,
        Decoder,
        DynamicsModel,
        ObservationEncoder,
        RolloutExecutor,
    )
    from .config import WorldModelConfig
    from .latent import (
        CategoricalLatent,
        GaussianLatent,
        LatentSpace,
        SimNormLatent,
        StochasticLatentSpace,
    )
    from .model import CONTRACT_VERSION, AutoregressiveRollout, WorldModel
    from .payloads import (
        ActionPayload,
        Batch,
        ConditionPayload,
        LossOutput,
        ModelOutput,
        Trajectory,
        WorldModelInput,
    )
    from .planner import PLANNER_HORIZON_KEY, Planner, PlannerOutput
    from .plugins import PLUGIN_API_VERSION, PluginManifest, PluginWarning, load_plugins
    from .registry import WorldModelRegistry, create_world_model
    from .serialization import FORMAT_VERSION, load_pretrained, save_pretrained
    from .state import State

__all__ = [
    "CONTRACT_VERSION",
    "FORMAT_VERSION",
    "PLANNER_HORIZON_KEY",
    "PLUGIN_API_VERSION",
    "ROLES",
    "ActionConditioner",
    "ActionPayload",
    "AutoregressiveRollout",
    "Batch",
    "BatchProvider",
    "BatchProviderV2",
    "BatchRequest",
    "CategoricalLatent",
    "ComponentRegistry",
    "ConditionPayload",
    "ConfigError",
    "ContractError",
    "Decoder",
    "DynamicsModel",
    "GaussianLatent",
    "LatentSpace",
    "LossOutput",
    "ModelOutput",
    "NoiseSpec",
    "ObservationEncoder",
    "Planner",
    "PlannerOutput",
    "PluginError",
    "PluginManifest",
    "PluginWarning",
    "RegistryError",
    "RolloutExecutor",
    "SerializationError",
    "SimNormLatent",
    "State",
    "StochasticLatentSpace",
    "Trajectory",
    "WorldFluxError",
    "WorldModel",
    "WorldModelConfig",
    "WorldModelInput",
    "WorldModelRegistry",
    "create_world_model",
    "load_plugins",
    "load_pretrained",
    "sample_noise_numpy",
    "sample_noise_torch",
    "save_pretrained",
]

_TORCH_FREE = {
    "ConfigError",
    "ContractError",
    "NoiseSpec",
    "PluginError",
    "RegistryError",
    "SerializationError",
    "WorldFluxError",
    "sample_noise_numpy",
    "sample_noise_torch",
}


_TORCH_ONLY = frozenset(__all__) - _TORCH_FREE
if not torch_available():  # star-imports and tools that walk __all__ see what exists
    __all__ = sorted(set(__all__) & _TORCH_FREE)


def __getattr__(name: str) -> Any:
    raise missing_attribute(__name__, _TORCH_ONLY, name)
