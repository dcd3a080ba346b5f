"""Recording dream vector-env rollouts for comparisons between backends and devices."""

from __future__ import annotations

from typing import Any

import numpy as np


def record(venv: Any, seed: int, steps: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Observations ``[steps + 1, N, ...]`` and episode ends ``[steps, N]`` of ``venv`` under
    uniform random actions (a fixed stream), from ``reset(seed=seed)``."""
    obs, _ = venv.reset(seed=seed)
    rng = np.random.default_rng(0)
    frames, dones = [obs], []
    for _ in range(steps):
        obs, _, terminated, truncated, _ = venv.step(
            rng.uniform(-1, 1, venv.action_space.shape).astype(np.float32)
        )
        frames.append(obs)
        dones.append(terminated | truncated)
    return np.stack(frames), np.stack(dones)


def write_random_dataset(dataset_id: str, env_id: str, steps: int, n_envs: int = 8) -> None:
    """A Minari dataset of ``steps`` uniform-random steps of ``env_id`` (into the current
    ``MINARI_DATASETS_PATH``)."""
    import gymnasium as gym

    from worldflux.data.collect import RandomPolicy, rollout_episodes, write_dataset

    space = gym.make(env_id).action_space
    episodes = rollout_episodes(
        env_id, RandomPolicy(space, 0), steps=steps, n_envs=n_envs, seed=0, progress=False
    )
    write_dataset(
        dataset_id, env_id, episodes, algorithm_name="random", description=f"random {env_id}"
    )
