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
