"""Frames of dream environments (``render_mode="rgb_array"``).

* MuJoCo locomotion sources (gymnasium's Walker2d, Hopper, HalfCheetah, ... whose observation is
  ``qpos[1:]`` followed by ``qvel``): the decoded observation is written into the real
  environment's MuJoCo state and rendered by MuJoCo (headless: set ``MUJOCO_GL=egl`` or
  ``osmesa``). The observation omits the root's forward position ``qpos[0]``; the renderer
  integrates it from the decoded forward velocity (``x += qvel[0] * dt`` per step, from 0 at
  reset), so the body travels as in the real environment and the tracking camera follows it.
* Image observations: the observation itself, scaled up.
* Anything else: a bar plot of the observation (each dimension in units of the reset
  observations' spread), drawn with numpy.
"""

from __future__ import annotations

from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from ..core.errors import ConfigError


class FrameRenderer(Protocol):
    def observe(self, obs: np.ndarray, reset: bool) -> None:
        """Record the observation ``[*S]`` after a reset (``reset=True``) or a step."""
        ...

    def frame(self) -> np.ndarray:
        """RGB frame ``[H, W, 3]`` uint8 of the last observation."""
        ...


#: side of MuJoCo frames, in pixels
FRAME_SIZE = 320


class MujocoFrames:
    """Writes observations into a real MuJoCo environment's state and renders it."""

    def __init__(self, env_id: str, width: int = FRAME_SIZE, height: int = FRAME_SIZE) -> None:
        self.env = gym.make(env_id, render_mode="rgb_array", width=width, height=height)
        self.env.reset(seed=0)
        sim: Any = self.env.unwrapped
        self.nq, self.nv, self.dt = int(sim.model.nq), int(sim.model.nv), float(sim.dt)
        size = int(self.env.observation_space.shape[0])  # type: ignore[index]
        if size != self.nq - 1 + self.nv:
            raise ConfigError(
                f"{env_id}: observations of size {size} are not qpos[1:] + qvel "
                f"({self.nq - 1} + {self.nv}); cannot render its dream states with MuJoCo."
            )
        self.x = 0.0
        self.obs: np.ndarray | None = None

    def observe(self, obs: np.ndarray, reset: bool) -> None:
        obs = np.asarray(obs, dtype=np.float64)
        if reset:
            self.x = 0.0
        else:
            self.x += float(obs[self.nq - 1]) * self.dt
        self.obs = obs

    def frame(self) -> np.ndarray:
        if self.obs is None:
            raise ConfigError("render() before reset(): reset the environment first.")
        qpos = np.concatenate([[self.x], self.obs[: self.nq - 1]])
        qvel = self.obs[self.nq - 1 : self.nq - 1 + self.nv]
        self.env.unwrapped.set_state(qpos, qvel)  # type: ignore[attr-defined]
        return np.asarray(self.env.render())


class ImageFrames:
    """Image observations ``[H, W, C]`` shown themselves, scaled up to about 256 pixels."""

    def __init__(self) -> None:
        self.obs: np.ndarray | None = None

    def observe(self, obs: np.ndarray, reset: bool) -> None:
        self.obs = np.asarray(obs)

    def frame(self) -> np.ndarray:
        if self.obs is None:
            raise ConfigError("render() before reset(): reset the environment first.")
        img = self.obs if self.obs.shape[-1] == 3 else np.repeat(self.obs[..., :1], 3, -1)
        scale = max(1, 256 // max(img.shape[:2]))
        return np.ascontiguousarray(img.repeat(scale, 0).repeat(scale, 1).astype(np.uint8))


class BarFrames:
    """A bar plot of a vector observation: one bar per dimension, centred on the reset
    observations' mean, full height at 3 of their standard deviations."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, size: int = 256) -> None:
        self.mean, self.std, self.size = mean, np.maximum(std, 1e-6), size
        self.obs: np.ndarray | None = None

    def observe(self, obs: np.ndarray, reset: bool) -> None:
        self.obs = np.asarray(obs, dtype=np.float64)

    def frame(self) -> np.ndarray:
        if self.obs is None:
            raise ConfigError("render() before reset(): reset the environment first.")
        n, size = len(self.obs), self.size
        img = np.full((size, size, 3), 255, np.uint8)
        mid = size // 2
        img[mid, :] = 0
        z = np.clip((self.obs - self.mean) / (3 * self.std), -1, 1)
        width = max(1, size // n)
        for i, v in enumerate(z):
            top, bottom = sorted((mid, int(mid - v * (mid - 2))))
            img[top : bottom + 1, i * width : (i + 1) * width - 1] = (40, 90, 200)
        return img


def make_frames(
    source_env: str | None, observation_space: gym.Space[Any], reset_obs: np.ndarray
) -> FrameRenderer:
    """The best renderer for a dream env: MuJoCo when the source env is a MuJoCo locomotion env
    whose observations are ``qpos[1:] + qvel``, the image itself for image observations, else a
    bar plot (also for MuJoCo envs with other observations, e.g. InvertedDoublePendulum's)."""
    if len(observation_space.shape or ()) == 3:
        return ImageFrames()
    if source_env is not None and source_env in gym.registry:
        spec = gym.registry[source_env]
        if "mujoco" in str(spec.entry_point):
            try:
                return MujocoFrames(source_env)
            except ConfigError:  # observations that do not map to a MuJoCo state
                pass
    flat = reset_obs.reshape(len(reset_obs), -1).astype(np.float64)
    return BarFrames(flat.mean(0), flat.std(0))
