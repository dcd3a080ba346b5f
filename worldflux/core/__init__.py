"""Core contracts: payloads, config, the WorldModel ABC, components, latent spaces, registry,
plugins and serialization. Everything else in WorldFlux builds on this package.
Without PyTorch only the errors and the noise specs are importable (the ONNX dream runtime needs
no more); the rest then raises :class:`worldflux.core.errors.TorchMissingError`. With PyTorch the
rest is imported on first use, so importing this package does not load torch.
"""

from typing import TYPE_CHECKING, Any

from .._optional import lazy_attribute, torch_available
from .errors import (
    ConfigError,
    ContractError,
    PluginError,
    RegistryError,
    SerializationError,
    WorldFluxError,
)
from .noise import NoiseSpec, sample_noise_numpy, sample_noise_torch

if TYPE_CHECKING:  # what the lazy names are, for type checkers and IDEs
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

#: the torch-only names and their modules (imported on first use, see the package docstring)
_TORCH_ONLY_SOURCES = {
    "BatchProvider": ".batch_provider",
    "BatchProviderV2": ".batch_provider",
    "BatchRequest": ".batch_provider",
    "ROLES": ".components",
    "ActionConditioner": ".components",
    "ComponentRegistry": ".components",
    "Decoder": ".components",
    "DynamicsModel": ".components",
    "ObservationEncoder": ".components",
    "RolloutExecutor": ".components",
    "WorldModelConfig": ".config",
    "CategoricalLatent": ".latent",
    "GaussianLatent": ".latent",
    "LatentSpace": ".latent",
    "SimNormLatent": ".latent",
    "StochasticLatentSpace": ".latent",
    "CONTRACT_VERSION": ".model",
    "AutoregressiveRollout": ".model",
    "WorldModel": ".model",
    "ActionPayload": ".payloads",
    "Batch": ".payloads",
    "ConditionPayload": ".payloads",
    "LossOutput": ".payloads",
    "ModelOutput": ".payloads",
    "Trajectory": ".payloads",
    "WorldModelInput": ".payloads",
    "PLANNER_HORIZON_KEY": ".planner",
    "Planner": ".planner",
    "PlannerOutput": ".planner",
    "PLUGIN_API_VERSION": ".plugins",
    "PluginManifest": ".plugins",
    "PluginWarning": ".plugins",
    "load_plugins": ".plugins",
    "WorldModelRegistry": ".registry",
    "create_world_model": ".registry",
    "FORMAT_VERSION": ".serialization",
    "load_pretrained": ".serialization",
    "save_pretrained": ".serialization",
    "State": ".state",
}

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

_TORCH_ONLY = frozenset(_TORCH_ONLY_SOURCES)
if not torch_available():  # star-imports and tools that walk __all__ see what exists
    __all__ = [name for name in __all__ if name not in _TORCH_ONLY]


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, _TORCH_ONLY_SOURCES, name)
