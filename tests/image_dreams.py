"""Shared checks and builders of image dream envs (the token and diffusion families' tests)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from gymnasium import spaces

from worldflux.core.model import WorldModel
from worldflux.dream import DreamEnv, LearnedSimulator, ResetStates, make_dream_env


def one_hot(index: list[int], n: int = 4) -> torch.Tensor:
    """One-hot rows ``[len(index), n]``."""
    return torch.eye(n)[torch.tensor(index)]


def random_frames(batch: int, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """``[batch, *shape]`` uniformly random uint8 pixels."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, *shape), dtype=torch.uint8, generator=g)


def continuing_sim(
    model: WorldModel, end_head: torch.nn.Module, pool: np.ndarray
) -> LearnedSimulator:
    """A 16 x 16 RGB, Discrete(4) simulator of ``model`` whose termination head ``end_head`` (a
    Linear layer) is set to say "continue", so episodes run; resets from ``pool [N, C, H, W]``."""
    assert isinstance(end_head, torch.nn.Linear)
    with torch.no_grad():
        end_head.weight.zero_()
        end_head.bias.fill_(-10.0)
    return LearnedSimulator(
        model=model,
        observation_space=spaces.Box(0, 255, (16, 16, 3), np.uint8),
        action_space=spaces.Discrete(4),
        reset_states=ResetStates(start=pool, any=pool),
        defaults={"horizon": 10},
    )


def check_image_dream_env(make_sim: Callable[[], LearnedSimulator]) -> None:
    """Both env checkers pass on ``make_sim()``'s dream env, and seeds reproduce its frames."""
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = make_dream_env(make_sim())
    assert isinstance(env, DreamEnv) and env.action_space == spaces.Discrete(4)
    check_env(env, skip_render_check=True)
    sb3_check_env(env, warn=True)

    def trajectory(seed: int) -> np.ndarray:
        env = make_dream_env(make_sim())
        obs, _ = env.reset(seed=seed)
        out = [obs]
        for a in [0, 1, 2, 3, 1, 2]:
            out.append(env.step(a)[0])
        return np.stack(out)

    first, again, other = trajectory(3), trajectory(3), trajectory(4)
    assert first.shape == (7, 16, 16, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first[1:], other[1:])
