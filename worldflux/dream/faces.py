"""The gymnasium faces of a dream core: a ``gymnasium.Env`` and a native
``gymnasium.vector.VectorEnv`` (the stable-baselines3 ``VecEnv`` is in :mod:`worldflux.dream.sb3`). Seeding follows gymnasium: environment ``i`` of a vector env
seeded with ``s`` behaves exactly like a single env seeded with ``s + i``.

Reset options (all faces): ``{"obs": observations}`` starts from given observations (one per
environment being reset) instead of the configured reset distribution; ``{"goal":
observations}`` gives goal-conditioned dreams (``goal_reward=True``) their goals instead of
drawing them from the dataset; the vector env also takes
``{"reset_mask": bool [N]}`` to reset only some environments (needed with
``autoreset_mode="Disabled"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from ..core.errors import ConfigError, ContractError
from .core import DreamCore
from .render import FrameRenderer

_RESET_OPTIONS = ("obs", "goal")
_VECTOR_RESET_OPTIONS = ("obs", "goal", "reset_mask")


def _array(value: Any) -> np.ndarray | None:
    """A reset option's observations as an array, or None."""
    return None if value is None else np.asarray(value)


def _one(value: Any) -> np.ndarray | None:
    """A single env's reset option (one observation) -> ``[1, *S]``, or None."""
    return None if value is None else np.asarray(value)[None]


def check_seed(seed: Any) -> None:
    """Raise :class:`ConfigError` unless ``seed`` is None or an integer >= 0 (numpy's seeding
    takes no negative seeds)."""
    if seed is None:
        return
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed: expected None or an integer >= 0, got {seed!r}.")


def _check_options(options: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
    if options is not None and not isinstance(options, dict):
        raise ConfigError(
            f"reset options: expected a dict (keys {list(allowed)}) or None, got "
            f"{type(options).__name__}."
        )
    options = dict(options or {})
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"reset options: unknown keys {unknown}; expected some of {list(allowed)}."
        )
    return options


class DreamEnv(gym.Env[np.ndarray, Any]):
    """A single dream environment (a core of one). ``render_mode="rgb_array"`` needs ``frames``
    (see :mod:`worldflux.dream.render`)."""

    def __init__(
        self,
        core: DreamCore,
        render_mode: str | None = None,
        frames: FrameRenderer | None = None,
    ) -> None:
        self.metadata = {"render_modes": ["rgb_array"], "render_fps": 30}
        if core.num_envs != 1:
            raise ConfigError(f"DreamEnv needs a core of 1 environment, got {core.num_envs}.")
        if render_mode not in (None, "rgb_array"):
            raise ConfigError(f"render_mode: expected None or 'rgb_array', got {render_mode!r}.")
        if render_mode is not None and frames is None:
            raise ConfigError("render_mode='rgb_array' needs a frame renderer.")
        self.core = core
        self.render_mode = render_mode
        self.frames = frames if render_mode is not None else None
        self.observation_space = core.observation_space
        self.action_space = core.action_space
        self._ended = False

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        check_seed(seed)
        opts = _check_options(options, _RESET_OPTIONS)
        super().reset(seed=seed)
        self.core.rngs[0] = self.np_random
        obs = self.core.reset(np.zeros(1, np.int64), _one(opts.get("obs")), _one(opts.get("goal")))
        if self.frames is not None:
            self.frames.observe(obs[0], reset=True)
        self._ended = False
        return obs[0], {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._ended:
            raise ContractError(
                "step() after the episode ended (terminated or truncated): call reset() first."
            )
        obs, reward, terminated, truncated, info = self.core.step(np.asarray(action)[None])
        self._ended = bool(terminated[0] or truncated[0])
        if self.frames is not None:
            self.frames.observe(obs[0], reset=False)
        return (
            obs[0],
            float(reward[0]),
            bool(terminated[0]),
            bool(truncated[0]),
            {k: v[0].item() for k, v in info.items()},
        )

    def render(self) -> np.ndarray | None:
        """RGB frame ``[H, W, 3]`` of the current dream state (``render_mode="rgb_array"``)."""
        return None if self.frames is None else self.frames.frame()


def _seeds(seed: int | Sequence[int | None] | None, n: int) -> list[int | None]:
    if seed is None:
        return [None] * n
    if isinstance(seed, (int, np.integer)):
        check_seed(seed)
        return [int(seed) + i for i in range(n)]
    seeds = list(seed)
    if len(seeds) != n:
        raise ConfigError(f"reset seeds: expected {n} (one per environment), got {len(seeds)}.")
    for s in seeds:
        check_seed(s)
    return seeds


def _vector_info(info: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, Any]:
    """Gymnasium's vector info layout: ``{key: [N], "_key": bool [N]}``."""
    out: dict[str, Any] = {}
    for key, value in info.items():
        out[key] = value
        out[f"_{key}"] = mask
    return out


class DreamVectorEnv(VectorEnv[np.ndarray, np.ndarray, np.ndarray]):
    """A native gymnasium vector env: one batched model step per ``step``, whatever N."""

    def __init__(self, core: DreamCore, autoreset_mode: str | AutoresetMode = "NextStep") -> None:
        try:
            mode = AutoresetMode(autoreset_mode)
        except ValueError:
            raise ConfigError(
                f"autoreset_mode: expected one of {[m.value for m in AutoresetMode]}, "
                f"got {autoreset_mode!r}."
            ) from None
        self.core = core
        self.num_envs = core.num_envs
        self.single_observation_space = core.observation_space
        self.single_action_space = core.action_space
        self.observation_space = batch_space(core.observation_space, self.num_envs)
        self.action_space = batch_space(core.action_space, self.num_envs)
        self.metadata = {"autoreset_mode": mode, "render_modes": []}
        self.autoreset_mode = mode
        #: ended last step and not reset yet (NextStep resets them next step; Disabled refuses)
        self._pending = np.zeros(self.num_envs, bool)
        self._last_obs: np.ndarray | None = None

    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        opts = _check_options(options, _VECTOR_RESET_OPTIONS)
        mask = np.ones(self.num_envs, bool)
        if "reset_mask" in opts:
            mask = np.asarray(opts["reset_mask"])
            if mask.shape != (self.num_envs,) or mask.dtype != bool:
                raise ConfigError(
                    f"reset_mask: expected a bool array of shape ({self.num_envs},), got "
                    f"{mask.dtype} {mask.shape}."
                )
        index = np.flatnonzero(mask)
        if seed is not None or self.core.state is None:
            for i, s in zip(index, _seeds(seed, len(index)), strict=True):
                self.core.rngs[i] = seeding.np_random(s)[0]
        if self.core.state is None and len(index) != self.num_envs:
            raise ConfigError("the first reset of a vector env must reset every environment.")
        obs_new = self.core.reset(index, _array(opts.get("obs")), _array(opts.get("goal")))
        if len(index) == self.num_envs:
            obs = obs_new
        else:
            assert self._last_obs is not None  # a full first reset came before
            obs = self._last_obs.copy()
            obs[index] = obs_new
        self._last_obs = obs
        self._pending[index] = False
        return obs, {}

    def step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self.autoreset_mode == AutoresetMode.DISABLED and self._pending.any():
            raise ContractError(
                f"step() with environments {np.flatnonzero(self._pending).tolist()} ended and "
                "not reset (autoreset_mode='Disabled'): reset them first (reset_mask)."
            )
        obs, reward, terminated, truncated, info = self.core.step(actions)
        everyone = np.ones(self.num_envs, bool)
        if self.autoreset_mode == AutoresetMode.NEXT_STEP and self._pending.any():
            index = np.flatnonzero(self._pending)
            obs[index] = self.core.reset(index)
            reward[index] = 0.0
            terminated[index] = False
            truncated[index] = False
            valid = ~self._pending
            out_info = _vector_info(info, valid)
            self._pending = terminated | truncated
        else:
            out_info = _vector_info(info, everyone)
            done = terminated | truncated
            if self.autoreset_mode != AutoresetMode.SAME_STEP:
                self._pending = done
            elif self.autoreset_mode == AutoresetMode.SAME_STEP and done.any():
                index = np.flatnonzero(done)
                out_info["final_obs"] = np.array([None] * self.num_envs, dtype=object)
                out_info["_final_obs"] = done
                for i in index:
                    out_info["final_obs"][i] = obs[i].copy()
                obs[index] = self.core.reset(index)
        self._last_obs = obs
        return obs, reward.astype(np.float64), terminated, truncated, out_info
