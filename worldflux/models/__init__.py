"""Built-in world-model families (registered on import)."""

from .ensemble import EnsembleConfig, EnsembleModel
from .rssm import DreamerV3Config, DreamerV3Model, PlaNetConfig, PlaNetModel

__all__ = [
    "DreamerV3Config",
    "DreamerV3Model",
    "EnsembleConfig",
    "EnsembleModel",
    "PlaNetConfig",
    "PlaNetModel",
]
