"""Scoring policies: episode returns in any gymnasium vector env (the real environment or a dream),
one first episode per environment so short episodes are not over-counted."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from ..core.errors import ConfigError

Policy = Callable[[np.ndarray], np.ndarray]


class Predictor(Protocol):
    """An agent with Stable-Baselines3's ``predict`` (SB3 models, ``MPCPolicy``)."""

    def predict(
        self,
        observation: Any,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, Any]: ...


def predictor_policy(agent: Predictor, deterministic: bool = True) -> Policy:
    """A :data:`Policy` over ``agent.predict`` that carries the agent's state (e.g. a planner's
    filtered latents) from call to call, starting a new run at the first call. For
    :func:`first_episodes`, which counts each env's first episode only."""
    memory: dict[str, Any] = {"state": None}

    def policy(obs: np.ndarray) -> np.ndarray:
        actions, memory["state"] = agent.predict(
            obs, state=memory["state"], deterministic=deterministic
        )
        return actions

    return policy


@dataclass
class Episodes:
    """Returns and lengths of finished episodes (``[E]`` each), and whether each ended by
    termination (not by the time limit) where that was recorded."""

    returns: np.ndarray
    lengths: np.ndarray
    terminated: np.ndarray | None = None

    @property
    def mean(self) -> float:
        return float(self.returns.mean())

    @property
    def std(self) -> float:
        return float(self.returns.std())

    def to_dict(self) -> dict[str, Any]:
        out = {
            "mean": self.mean,
            "std": self.std,
            "returns": [round(float(r), 3) for r in self.returns],
            "lengths": [int(n) for n in self.lengths],
        }
        if self.terminated is not None:
            out["terminated"] = [bool(t) for t in self.terminated]
        return out


#: an evaluation stops with an error after this many steps (a dream that never ends an episode)
MAX_EVAL_STEPS = 100_000


def first_episodes(
    venv: gym.vector.VectorEnv,
    policy: Policy,
    seed: int,
    max_steps: int = MAX_EVAL_STEPS,
    after_reset: Callable[[gym.vector.VectorEnv], None] | None = None,
) -> Episodes:
    """Run ``policy`` (batched: ``[N, *obs]`` -> ``[N, *act]``) in every environment of ``venv``
    (autoreset ``NextStep``, the gymnasium default) until each has finished its first episode.
    ``after_reset(venv)`` runs once after the reset (e.g. to give a policy the envs' goals).

    Raises:
        ConfigError: an episode is still running after ``max_steps`` steps (give the env a
            horizon).
    """
    n = venv.num_envs
    obs, _ = venv.reset(seed=seed)
    if after_reset is not None:
        after_reset(venv)
    returns = np.zeros(n)
    lengths = np.zeros(n, np.int64)
    ended_by_termination = np.zeros(n, bool)
    running = np.ones(n, bool)
    while running.any():
        if lengths.max() >= max_steps:
            raise ConfigError(
                f"evaluation: an episode is still running after {max_steps} steps; give the "
                "environment a horizon (time limit)."
            )
        obs, reward, terminated, truncated, _ = venv.step(policy(obs))
        returns += np.where(running, reward, 0.0)
        lengths += running
        ended_by_termination |= running & np.asarray(terminated, bool)
        running &= ~(np.asarray(terminated) | np.asarray(truncated))
    return Episodes(returns, lengths, ended_by_termination)


def real_env_episodes(
    env_id: str,
    policy: Policy,
    episodes: int,
    seed: int,
    env_kwargs: dict[str, Any] | None = None,
    wrappers: Sequence[Callable[[gym.Env[Any, Any]], gym.Wrapper[Any, Any, Any, Any]]] = (),
    after_reset: Callable[[gym.vector.VectorEnv], None] | None = None,
) -> Episodes:
    """``episodes`` episodes of ``policy`` in ``gym.make_vec(env_id)`` (synchronous copies,
    seeded ``seed``, ``seed + 1``, ...; each wrapped with ``wrappers``, e.g. a
    :class:`~worldflux.dream.latent.LatentObservation` for latent policies); ``after_reset`` as
    for :func:`first_episodes`."""
    if episodes < 1:
        raise ConfigError(f"episodes: expected >= 1, got {episodes}.")
    venv = gym.make_vec(
        env_id,
        num_envs=episodes,
        vectorization_mode="sync",
        wrappers=list(wrappers) or None,
        **(env_kwargs or {}),
    )
    try:
        return first_episodes(venv, policy, seed, after_reset=after_reset)
    finally:
        venv.close()
