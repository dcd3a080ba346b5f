"""Tiny Gymnasium environments with known dynamics, for data-layer tests.

Registered by id (``entry_point`` strings, so Minari can store and recover them):

* ``WFTest/Linear-v0`` - ``x' = A x + B a``; reward ``w . a + 0.1 x[0]`` depends on the *current*
  action; terminates when ``|x'[0]| > 1``; time limit 30 steps.
* ``WFTest/Nonlinear-v0`` - 3-dim ``x' = A x + B a + 0.3 sin(2 x)``; reward
  ``w . a + 0.5 cos(3 x[1])``; terminates when ``|x'[0]| > 1.7`` (about 1 episode in 4 reaches the 60-step limit). A linear
  model cannot fit it.
* ``WFTest/Image-v0`` - 6x5x3 uint8 images whose pixels encode the step count and the action.
* ``WFTest/DictObs-v0`` - a Dict observation space (unsupported by the data layer).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

A = np.array([[0.9, 0.2], [-0.2, 0.9]], dtype=np.float32)
B = np.array([[0.5, 0.0], [0.1, 0.4]], dtype=np.float32)
W = np.array([1.0, -2.0], dtype=np.float32)
LIMIT = 1.0


class LinearEnv(gym.Env):  # type: ignore[type-arg]
    observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):  # type: ignore[no-untyped-def]
        super().reset(seed=seed)
        self.x = self.np_random.uniform(-0.5, 0.5, size=2).astype(np.float32)
        return self.x.copy(), {}

    def step(self, action):  # type: ignore[no-untyped-def]
        a = np.asarray(action, dtype=np.float32)
        reward = float(W @ a + 0.1 * self.x[0])
        self.x = (A @ self.x + B @ a).astype(np.float32)
        terminated = bool(abs(self.x[0]) > LIMIT)
        return self.x.copy(), reward, terminated, False, {}


A3 = np.array([[0.8, 0.3, 0.0], [-0.3, 0.8, 0.2], [0.0, -0.2, 0.9]], dtype=np.float32)
B3 = np.array([[0.3, 0.0], [0.1, 0.3], [0.0, 0.2]], dtype=np.float32)
LIMIT3 = 1.7


class NonlinearEnv(gym.Env):  # type: ignore[type-arg]
    observation_space = spaces.Box(-np.inf, np.inf, (3,), np.float32)
    action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):  # type: ignore[no-untyped-def]
        super().reset(seed=seed)
        self.x = self.np_random.uniform(-0.5, 0.5, size=3).astype(np.float32)
        return self.x.copy(), {}

    def step(self, action):  # type: ignore[no-untyped-def]
        a = np.asarray(action, dtype=np.float32)
        reward = float(W @ a + 0.5 * np.cos(3 * self.x[1]))
        self.x = (A3 @ self.x + B3 @ a + 0.3 * np.sin(2 * self.x)).astype(np.float32)
        terminated = bool(abs(self.x[0]) > LIMIT3)
        return self.x.copy(), reward, terminated, False, {}


class ImageEnv(gym.Env):  # type: ignore[type-arg]
    observation_space = spaces.Box(0, 255, (6, 5, 3), np.uint8)
    action_space = spaces.Discrete(3)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):  # type: ignore[no-untyped-def]
        super().reset(seed=seed)
        self.t = 0
        return self._obs(0), {}

    def _obs(self, action: int) -> np.ndarray:
        img = np.zeros((6, 5, 3), dtype=np.uint8)
        img[..., 0] = self.t  # channel 0: step count
        img[..., 1] = 10 * action  # channel 1: last action
        img[0, 0, 2] = 200  # a marker at the top-left of channel 2
        return img

    def step(self, action):  # type: ignore[no-untyped-def]
        self.t += 1
        return self._obs(int(action)), float(action), False, False, {}


class DictObsEnv(gym.Env):  # type: ignore[type-arg]
    observation_space = spaces.Dict({"pos": spaces.Box(-1, 1, (2,), np.float32)})
    action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):  # type: ignore[no-untyped-def]
        super().reset(seed=seed)
        return {"pos": np.zeros(2, np.float32)}, {}

    def step(self, action):  # type: ignore[no-untyped-def]
        return {"pos": np.zeros(2, np.float32)}, 0.0, False, False, {}


def register() -> None:
    for env_id, entry, steps in (
        ("WFTest/Linear-v0", "synthetic_envs:LinearEnv", 30),
        ("WFTest/Nonlinear-v0", "synthetic_envs:NonlinearEnv", 60),
        ("WFTest/Image-v0", "synthetic_envs:ImageEnv", 12),
        ("WFTest/DictObs-v0", "synthetic_envs:DictObsEnv", 10),
    ):
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry, max_episode_steps=steps)
