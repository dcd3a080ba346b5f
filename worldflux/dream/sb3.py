"""The stable-baselines3 face of a dream core: a ``VecEnv`` with same-step autoreset, as SB3
expects. Works under ``VecNormalize`` and ``VecMonitor``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from gymnasium.utils import seeding
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from ..core.errors import ConfigError
from .core import DreamCore
from .faces import check_seed


class DreamSB3VecEnv(VecEnv):
    """SB3 ``VecEnv`` over a dream core: same-step autoreset, ``terminal_observation`` and
    ``TimeLimit.truncated`` in the infos of finished environments."""

    render_mode = None

    def __init__(self, core: DreamCore) -> None:
        self.core = core
        super().__init__(core.num_envs, core.observation_space, core.action_space)
        self._actions: np.ndarray | None = None

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """SB3's ``seed``: checked now (gymnasium takes no negative seeds), used at the next
        reset (environment ``i`` gets ``seed + i``)."""
        check_seed(seed)
        return super().seed(seed)

    def reset(self) -> np.ndarray:
        for i, s in enumerate(self._seeds):
            if s is not None or self.core.state is None:
                self.core.rngs[i] = seeding.np_random(s)[0]
        given = {key: self._per_env_option(key) for key in ("obs", "goal")}
        obs = self.core.reset(np.arange(self.num_envs), given["obs"], given["goal"])
        self._reset_seeds()
        self._reset_options()
        return obs

    def _per_env_option(self, key: str) -> np.ndarray | None:
        """Reset option ``key`` (``"obs"``, ``"goal"``) of every env (``set_options``) stacked
        ``[N, *S]``, or None when no env has it."""
        given = [o.get(key) for o in self._options]
        if all(g is None for g in given):
            return None
        if any(g is None for g in given):
            raise ConfigError(f"reset options {key!r}: give one observation to every env.")
        return np.stack([np.asarray(g) for g in given])

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        obs, reward, terminated, truncated, info = self.core.step(self._actions)
        done = terminated | truncated
        infos: list[dict[str, Any]] = [
            {k: v[i].item() for k, v in info.items()} for i in range(self.num_envs)
        ]
        if done.any():
            index = np.flatnonzero(done)
            for i in index:
                infos[i]["terminal_observation"] = obs[i].copy()
                infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            obs[index] = self.core.reset(index)
        return obs, reward.astype(np.float32), done, infos

    def close(self) -> None:
        pass

    def _indices(self, indices: int | Iterable[int] | None) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        if isinstance(indices, int):
            return [indices]
        return list(indices)

    def get_attr(self, attr_name: str, indices: int | Iterable[int] | None = None) -> list[Any]:
        value = getattr(self, attr_name)
        return [value for _ in self._indices(indices)]

    def set_attr(
        self, attr_name: str, value: Any, indices: int | Iterable[int] | None = None
    ) -> None:
        raise AttributeError(
            f"set_attr({attr_name!r}): the environments of a dream VecEnv share one core; "
            "set dream settings when making the env."
        )

    def env_method(
        self,
        method_name: str,
        *method_args: Any,
        indices: int | Iterable[int] | None = None,
        **method_kwargs: Any,
    ) -> list[Any]:
        method = getattr(self, method_name)
        return [method(*method_args, **method_kwargs) for _ in self._indices(indices)]

    def env_is_wrapped(
        self, wrapper_class: type, indices: int | Iterable[int] | None = None
    ) -> list[bool]:
        return [False for _ in self._indices(indices)]
