"""Dream environments: learned simulators served as gymnasium / stable-baselines3 environments.

:func:`make_dream_env` turns a training run, an artifact or an env card into a ``gymnasium.Env``,
a gymnasium ``VectorEnv`` or an SB3 ``VecEnv``; every env card is registered with gymnasium on
``import worldflux``.
"""

from .cards import EnvCard, find_card, load_cards
from .core import DreamActionError, DreamCore, DreamSettings, DreamStateError, ResetStates
from .faces import DreamEnv, DreamVectorEnv
from .latent import LatentObservation
from .make import load_simulator, make_dream_env, register_cards
from .simulator import LearnedSimulator

__all__ = [
    "DreamActionError",
    "DreamCore",
    "DreamEnv",
    "DreamSettings",
    "DreamStateError",
    "DreamVectorEnv",
    "EnvCard",
    "LatentObservation",
    "LearnedSimulator",
    "ResetStates",
    "find_card",
    "load_cards",
    "load_simulator",
    "make_dream_env",
    "register_cards",
]
