"""Backends run the model for a batched dream core: ``encode`` observations into a state and
``step`` a state with actions and explicit noise. The state stays on the backend (a torch device
with :mod:`worldflux.dream.torch_backend`); only observations, rewards,
continue probabilities and uncertainties come back as numpy arrays.

Shapes: N = environments, ``*O`` = observation shape as the model sees it, A = action size.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..core.errors import ConfigError
from ..core.noise import NoiseSpec


def check_device(device: Any) -> str:
    """``device`` if it is ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; else :class:`ConfigError`."""
    if not isinstance(device, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise ConfigError(f"device: expected 'cpu', 'cuda' or 'cuda:N', got {device!r}.")
    return device


@dataclass
class StepResult:
    """What one batched step returns (numpy, float32).

    Attributes:
        obs: ``[N, *O]`` predicted next observations (model space); None for models without
            an observation decoder.
        reward: ``[N]`` predicted rewards for the actions taken.
        continue_prob: ``[N]`` probability that the episode goes on.
        uncertainty: ``[N]`` epistemic uncertainty, or None for models without one.
    """

    obs: np.ndarray | None
    reward: np.ndarray
    continue_prob: np.ndarray
    uncertainty: np.ndarray | None


class DreamBackend(Protocol):
    """What the dream core needs from a backend."""

    obs_shape: tuple[int, ...]
    action_dim: int
    noise_spec: Mapping[str, NoiseSpec]
    #: state keys that make the latent features (:meth:`latent`)
    latent_keys: tuple[str, ...]
    #: whether :meth:`step` predicts observations (False for decoder-free models)
    decodes_observations: bool

    def encode(self, obs: np.ndarray) -> Any:
        """Observations ``[N, *O]`` -> a backend state for N environments."""
        ...

    def step(
        self, state: Any, action: np.ndarray, noise: Mapping[str, np.ndarray]
    ) -> tuple[Any, StepResult]:
        """One step for all environments: actions ``[N, A]`` float32, noise ``{k: [N, ...]}``."""
        ...

    def replace(self, state: Any, index: np.ndarray, new: Any) -> Any:
        """``state`` with the rows at ``index`` (``[K]`` int) replaced by ``new`` (K rows)."""
        ...

    def latent(self, state: Any) -> np.ndarray:
        """Latent features ``[N, F]`` float32: the ``latent_keys`` tensors of ``state``,
        flattened per environment and concatenated."""
        ...
