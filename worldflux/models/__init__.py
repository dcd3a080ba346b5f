"""Built-in world-model families (registered on import)."""

from .rssm import DreamerV3Config, DreamerV3Model, PlaNetConfig, PlaNetModel

__all__ = ["DreamerV3Config", "DreamerV3Model", "PlaNetConfig", "PlaNetModel"]
