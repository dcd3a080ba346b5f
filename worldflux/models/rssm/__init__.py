"""RSSM families: DreamerV3 and PlaNet."""

from .model import DreamerV3Config, DreamerV3Model, PlaNetConfig, PlaNetModel, RSSMConfig

__all__ = ["DreamerV3Config", "DreamerV3Model", "PlaNetConfig", "PlaNetModel", "RSSMConfig"]
