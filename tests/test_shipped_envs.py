"""The project's registered dream environments, from their shipped artifacts: the gymnasium and
SB3 checkers, ``gym.make_vec``, and a 100k-step random-action rollout without NaN or inf.
A card whose artifact is not built is skipped (``worldflux build CARD`` builds it)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import worldflux  # noqa: F401  (registers the cards)
from worldflux.dream import DreamVectorEnv
from worldflux.dream.cards import load_cards

CARDS = load_cards()


def _built(name: str) -> None:
    if not CARDS[name].built:
        pytest.skip(f"{CARDS[name].id}: artifact not built (worldflux build {name})")


@pytest.mark.parametrize("backend", ["torch", "onnx"])
@pytest.mark.parametrize("name", sorted(CARDS))
def test_shipped_env_passes_the_checkers(name: str, backend: str) -> None:
    _built(name)
    env = gym.make(CARDS[name].id, backend=backend)
    gym_check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(env.unwrapped, warn=True)
    obs, _ = env.reset(seed=0)
    assert obs in env.observation_space


@pytest.mark.parametrize("name", sorted(CARDS))
def test_shipped_env_random_rollout_stays_finite(name: str) -> None:
    _built(name)
    venv = gym.make_vec(CARDS[name].id, num_envs=1000)
    assert isinstance(venv, DreamVectorEnv)
    venv.reset(seed=0)
    rng = np.random.default_rng(0)
    low, high = venv.single_action_space.low, venv.single_action_space.high
    for _ in range(100):  # 100k environment steps, with autoresets
        obs, reward, *_ = venv.step(rng.uniform(low, high, (1000, len(low))).astype(np.float32))
        assert np.isfinite(obs).all() and np.isfinite(reward).all()
