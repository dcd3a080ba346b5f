"""Built-in world-model families (registered on import)."""

from .diffusion import DiffusionConfig, DiffusionModel
from .ensemble import EnsembleConfig, EnsembleModel
from .jepa import JEPAConfig, JEPAModel
from .rssm import DreamerV3Config, DreamerV3Model, PlaNetConfig, PlaNetModel
from .tdmpc2 import TDMPC2Config, TDMPC2Model
from .token import TokenConfig, TokenModel

__all__ = [
    "DiffusionConfig",
    "DiffusionModel",
    "DreamerV3Config",
    "DreamerV3Model",
    "EnsembleConfig",
    "EnsembleModel",
    "JEPAConfig",
    "JEPAModel",
    "PlaNetConfig",
    "PlaNetModel",
    "TDMPC2Config",
    "TDMPC2Model",
    "TokenConfig",
    "TokenModel",
]
