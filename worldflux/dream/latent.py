"""Deploying a policy trained on latent observations (a dream env with ``observation="latent"``):
a wrapper that turns a real environment's observations into the same latent features.

At reset the real observation is encoded (``encode``); after each step the latent state is
filtered with the model's posterior step (``update(state, action, obs)``) where the backend has
one (the torch backend), as a Dreamer-style agent tracks its state, and re-encoded from the new
observation otherwise (the ONNX backend exports no ``update`` graph: exact for models whose latent
is a function of the current observation, such as ensembles, an approximation for RSSMs).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ..core.errors import ConfigError
from ..data.spaces import action_layout, observation_layout
from .make import load_simulator
from .simulator import Backend, LearnedSimulator


class LatentObservation(gym.Wrapper[np.ndarray, Any, Any, Any]):
    """A real ``env`` whose observations are the learned simulator's latent features
    ``[F]`` float32, as in the dream env's latent-observation mode.

    Args:
        env: the real environment (its spaces must be the simulator's).
        source: the simulator (object, run or artifact folder, card name or id).
        backend, device: where the model runs (``"torch"`` filters with the posterior step).
    """

    def __init__(
        self,
        env: gym.Env[Any, Any],
        source: str | LearnedSimulator,
        *,
        backend: Backend = "torch",
        device: str = "cpu",
    ) -> None:
        super().__init__(env)
        sim = source if isinstance(source, LearnedSimulator) else load_simulator(source)
        if env.observation_space.shape != sim.observation_space.shape:
            raise ConfigError(
                f"LatentObservation: the environment's observations {env.observation_space} do "
                f"not match the simulator's {sim.observation_space}."
            )
        if backend == "auto":
            raise ConfigError("LatentObservation: expected backend 'torch' or 'onnx', got 'auto'.")
        self.model = sim.make_backend(backend, device=device)
        self.obs_layout = observation_layout(sim.observation_space)
        self.act_layout = action_layout(sim.action_space)
        self.state: Any = None
        width = self.model.latent(self.model.encode(sim.reset_states.start[:1])).shape[1]
        self.observation_space = spaces.Box(-np.inf, np.inf, (width,), np.float32)

    def _model_obs(self, obs: Any) -> np.ndarray:
        return self.obs_layout.convert(np.asarray(obs)[None])

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self.state = self.model.encode(self._model_obs(obs))
        return self.model.latent(self.state)[0], info

    def step(self, action: Any) -> tuple[np.ndarray, Any, bool, bool, dict[str, Any]]:
        if self.state is None:
            raise ConfigError("LatentObservation: step() before reset().")
        obs, reward, terminated, truncated, info = self.env.step(action)
        model_obs = self._model_obs(obs)
        update = getattr(self.model, "update", None)
        if update is not None:
            model_action = self.act_layout.convert(np.asarray(action)[None])
            self.state = update(self.state, model_action, model_obs)
        else:
            self.state = self.model.encode(model_obs)
        return self.model.latent(self.state)[0], reward, terminated, truncated, info
