"""The two-rooms goal-reaching env: walls and door, observations, goals, both env checkers."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import worldflux  # noqa: F401  (registers the ids)
from worldflux.core.errors import ConfigError
from worldflux.envs import ENVS
from worldflux.envs.two_rooms import TwoRoomsEnv


@pytest.mark.parametrize("env_id", sorted(k for k in ENVS if "TwoRooms" in k))
def test_registered_envs_pass_both_checkers(env_id: str) -> None:
    env = gym.make(env_id, render_mode="rgb_array")
    check_env(env.unwrapped)
    sb3_check_env(env)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert env.render().shape == (64, 64, 3)
    assert env.spec is not None and env.spec.max_episode_steps == 100


def test_the_wall_blocks_everywhere_but_the_door() -> None:
    env = TwoRoomsEnv("state", step_size=0.2, door=0.4, wall_gap=0.01)
    right = np.array([1.0, 0.0])
    # at y = 0.5 the wall is closed: the move stops just left of it
    np.testing.assert_allclose(env.move(np.array([-0.05, 0.5]), right), [-0.01, 0.5])
    np.testing.assert_allclose(env.move(np.array([0.05, -0.5]), -right), [0.01, -0.5])
    # through the door (|y| < 0.2) it passes
    np.testing.assert_allclose(env.move(np.array([-0.05, 0.1]), right), [0.15, 0.1])
    # a diagonal move crossing x = 0 inside the door passes, outside it does not
    np.testing.assert_allclose(env.move(np.array([-0.1, 0.05]), np.array([1.0, 1.0])), [0.1, 0.25])
    np.testing.assert_allclose(
        env.move(np.array([-0.1, 0.25]), np.array([1.0, 1.0])), [-0.01, 0.45]
    )
    # outer walls clip; actions beyond [-1, 1] count as the bound
    np.testing.assert_allclose(env.move(np.array([0.95, 0.95]), np.array([5.0, 1.0])), [1.0, 1.0])


def test_random_walks_rarely_change_rooms_and_never_through_the_wall() -> None:
    """200 goal-free random walks of 100 steps: a sixth or so pass the door (0.17 measured),
    every crossing inside the door's band, none through the wall."""
    env = TwoRoomsEnv("state", task="explore")
    rng = np.random.default_rng(0)
    crossed_episodes = 0
    for episode in range(200):
        obs, _ = env.reset(seed=episode)
        assert abs(obs[0]) > 2 * env.wall_gap  # starts outside the wall's band
        crossed = False
        for _ in range(100):
            nxt, reward, terminated, truncated, _ = env.step(rng.uniform(-1, 1, 2))
            assert reward == 0.0 and not terminated and not truncated
            if np.sign(nxt[0]) != np.sign(obs[0]):
                crossed = True
                assert not env.blocked(obs, nxt)
                assert abs(obs[1]) < env.door / 2 + env.step_size  # at the door
            obs = nxt
        crossed_episodes += crossed
    assert 0.08 < crossed_episodes / 200 < 0.3


def test_no_success_through_the_wall() -> None:
    env = TwoRoomsEnv("state")
    env.reset(seed=0, options={"start": (-0.08, 0.5), "goal": (0.04, 0.5)})
    _, _, terminated, _, info = env.step(np.array([1.0, 0.0], np.float32))
    assert info["position"][0] == pytest.approx(-env.wall_gap)
    assert info["distance"] < env.goal_radius and not info["success"] and not terminated


def test_goal_observation_reward_and_success() -> None:
    env = TwoRoomsEnv()
    obs, info = env.reset(seed=0, options={"start": (-0.5, 0.55), "goal": (-0.5, 0.3)})
    assert obs.shape == (64, 64, 1) and obs.dtype == np.uint8
    assert not np.array_equal(obs, env.goal_observation())  # the agent is drawn where it is
    assert info["distance"] == pytest.approx(0.25)
    obs, reward, terminated, _, info = env.step(np.array([0.0, -1.0], np.float32))
    assert reward == pytest.approx(-0.15) and not terminated
    obs, reward, terminated, _, info = env.step(np.array([0.0, -1.0], np.float32))
    assert terminated and info["success"]
    np.testing.assert_array_equal(env.goal_observation(), env.observe(np.array([-0.5, 0.3])))


def test_bad_settings_and_actions_are_named() -> None:
    with pytest.raises(ConfigError, match="observation: expected 'pixels' or 'state', got 'rgb'"):
        TwoRoomsEnv("rgb")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"door: expected a number in \(0.0, 2.0\), got 3"):
        TwoRoomsEnv(door=3)
    with pytest.raises(ConfigError, match="task: expected 'goal' or 'explore'"):
        TwoRoomsEnv(task="reach")  # type: ignore[arg-type]
    env = TwoRoomsEnv("state")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="expected 2 finite floats"):
        env.step(np.array([np.nan, 0.0]))
    with pytest.raises(ConfigError, match=r"options\['goal'\] as \(x, y\) within \[-1, 1\]"):
        env.reset(options={"goal": (2.0, 0.0)})


def test_the_oracle_moves_as_the_env_does() -> None:
    """The planning oracle's batched torch dynamics equal the env's own, wall and door included."""
    import torch

    from worldflux.envs.two_rooms_oracle import TwoRoomsOracle

    env = TwoRoomsEnv("state")
    oracle = TwoRoomsOracle(env)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (2000, 2))
    x[:500, 0] = rng.uniform(-0.15, 0.15, 500)  # many moves across the wall's line
    u = rng.uniform(-1.5, 1.5, (2000, 2))
    expected = np.stack([env.move(a, b) for a, b in zip(x, u, strict=True)])
    got = oracle.move(torch.tensor(x, dtype=torch.float64), torch.tensor(u, dtype=torch.float64))
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-12)
    with pytest.raises(ConfigError, match="expected a TwoRoomsEnv with observation='state'"):
        TwoRoomsOracle(TwoRoomsEnv())
    with pytest.raises(ConfigError, match="nothing to learn"):
        oracle.loss(None)  # type: ignore[arg-type]
