"""Deploying a policy trained on latent observations (a dream env with ``observation="latent"``):
a wrapper that turns a real environment's observations into the same latent features.

At reset the real observation is encoded (``encode``); after each step the latent state is
filtered with the model's posterior step (``update(state, action, obs)``) where the backend has
one (the torch backend), as a Dreamer-style agent tracks its state, and re-encoded from the new
observation otherwise (the ONNX backend exports no ``update`` graph: exact for models whose latent
is a function of the current observation, such as ensembles, an approximation for RSSMs).

A policy trained in a goal-conditioned dream (``goal_reward=True``) sees ``[features, goal
features]``: give the wrapper ``goal``, a function that returns the real environment's goal
observation after each reset.
"""

from __future__ import annotations

from collections.abc import Callable
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
        goal: for policies of goal-conditioned dreams: ``goal(env)`` returns the goal
            observation (in the environment's observation space) after each reset, e.g.
            ``lambda env: env.unwrapped.goal_observation()`` for the two rooms; observations
            are then ``[F + F]``, the features and the goal's.
    """

    def __init__(
        self,
        env: gym.Env[Any, Any],
        source: str | LearnedSimulator,
        *,
        backend: Backend = "torch",
        device: str = "cpu",
        goal: Callable[[gym.Env[Any, Any]], Any] | None = None,
    ) -> None:
        super().__init__(env)
        if goal is not None and not callable(goal):
            raise ConfigError(
                "LatentObservation: goal: expected a function of the environment that returns "
                f"its goal observation, got {type(goal).__name__}."
            )
        self.goal = goal
        self.goal_features: np.ndarray | None = None
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
        if goal is not None:
            width *= 2
        self.observation_space = spaces.Box(-np.inf, np.inf, (width,), np.float32)

    def _model_obs(self, obs: Any) -> np.ndarray:
        return self.obs_layout.convert(np.asarray(obs)[None])

    def _features(self) -> np.ndarray:
        features = self.model.latent(self.state)[0]
        if self.goal_features is None:
            return features
        return np.concatenate([features, self.goal_features])

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self.state = self.model.encode(self._model_obs(obs))
        if self.goal is not None:
            goal_obs = np.asarray(self.goal(self.env))
            if goal_obs.shape != self.env.observation_space.shape:
                raise ConfigError(
                    "LatentObservation: goal(env): expected an observation of shape "
                    f"{self.env.observation_space.shape}, got {goal_obs.shape}."
                )
            self.goal_features = self.model.latent(self.model.encode(self._model_obs(goal_obs)))[0]
        return self._features(), info

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
        return self._features(), reward, terminated, truncated, info
