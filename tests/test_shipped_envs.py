"""The project's registered dream environments, from their shipped artifacts: the gymnasium and
SB3 checkers, ``gym.make_vec``, and a random-action rollout without NaN or inf (100k steps;
image dreams 1,280).
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
    if backend == "onnx" and not CARDS[name].onnx:
        pytest.skip(f"{CARDS[name].id}: the artifact carries the torch model only")
    env = gym.make(CARDS[name].id, backend=backend)
    gym_check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(env.unwrapped, warn=True)
    obs, _ = env.reset(seed=0)
    assert obs in env.observation_space


@pytest.mark.parametrize("name", sorted(CARDS))
def test_shipped_env_random_rollout_stays_finite(name: str) -> None:
    _built(name)
    image = len(gym.make(CARDS[name].id).observation_space.shape) == 3
    envs, steps = (32, 40) if image else (1000, 100)  # image dreams: a transformer per step
    venv = gym.make_vec(CARDS[name].id, num_envs=envs)
    assert isinstance(venv, DreamVectorEnv)
    venv.reset(seed=0)
    venv.single_action_space.seed(0)
    for _ in range(steps):  # with autoresets
        actions = np.stack([venv.single_action_space.sample() for _ in range(envs)])
        obs, reward, *_ = venv.step(actions)
        assert np.isfinite(obs).all() and np.isfinite(reward).all()
