"""Behaviour cloning of SB3 policies (worldflux.rl.behaviour): the warm start reproduces a known
deterministic behaviour for Gaussian (PPO) and squashed (SAC, TD3) policies, in the environment's
action scale."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces

from worldflux.core.errors import ConfigError
from worldflux.rl.behaviour import BehaviourCloner, BehaviourData, seed_normaliser

OBS = spaces.Box(-np.inf, np.inf, (4,), np.float64)
ACT = spaces.Box(-2.0, 2.0, (2,), np.float32)
#: cloned actions must match the behaviour to this mean squared error (actions span [-2, 2])
CLONE_MSE = 0.02


def behaviour(n: int, seed: int) -> BehaviourData:
    """Observations ~ N(3, 2^2); actions 1.8 tanh(W (obs - 3) / 2), inside the bounds."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(3.0, 2.0, size=(n, 4))
    w = np.array([[0.8, -0.5], [0.3, 0.9], [-0.7, 0.2], [0.1, -0.4]])
    actions = 1.8 * np.tanh((obs - 3.0) / 2.0 @ w)
    return BehaviourData(obs=obs, actions=actions.astype(np.float32))


def make_policy(algorithm: str):  # type: ignore[no-untyped-def]
    from stable_baselines3.common.policies import ActorCriticPolicy
    from stable_baselines3.sac.policies import SACPolicy
    from stable_baselines3.td3.policies import TD3Policy

    cls = {"ppo": ActorCriticPolicy, "sac": SACPolicy, "td3": TD3Policy}[algorithm]
    return cls(OBS, ACT, lambda _: 3e-4, net_arch=[64, 64])


@pytest.mark.parametrize("algorithm", ["ppo", "sac", "td3"])
def test_warm_start_clones_the_behaviour_in_the_env_action_scale(algorithm: str) -> None:
    data, held_out = behaviour(4000, 0), behaviour(500, 1)
    mean, std = data.obs.mean(0), data.obs.std(0)

    def normalise(obs: np.ndarray) -> np.ndarray:
        return (obs - mean) / std

    policy = make_policy(algorithm)
    before, _ = policy.predict(normalise(held_out.obs).astype(np.float32), deterministic=True)
    cloner = BehaviourCloner(policy, data, normalise, seed=0, learning_rate=1e-3)
    loss = cloner.step(1500)
    after, _ = policy.predict(normalise(held_out.obs).astype(np.float32), deterministic=True)
    error = float(np.mean((after - held_out.actions) ** 2))
    assert error < CLONE_MSE < float(np.mean((before - held_out.actions) ** 2)), error
    # the training loss is in the policy's own scale: [-1, 1] for squashed policies (1/4 here)
    scale = 0.25 if algorithm in ("sac", "td3") else 1.0
    assert loss < 2 * CLONE_MSE * scale


def test_normaliser_starts_from_the_dataset() -> None:
    from stable_baselines3.common.running_mean_std import RunningMeanStd

    class Norm:
        obs_rms = RunningMeanStd(shape=(4,))

    data = behaviour(1000, 0)
    norm = Norm()
    seed_normaliser(norm, data.obs)
    np.testing.assert_allclose(norm.obs_rms.mean, data.obs.mean(0))
    np.testing.assert_allclose(norm.obs_rms.var, data.obs.var(0))
    assert norm.obs_rms.count == 1000


def test_behaviour_needs_continuous_actions() -> None:
    with pytest.raises(ConfigError, match=r"needs a Box \(continuous\) action space"):
        BehaviourData.from_store(None, spaces.Discrete(3))  # type: ignore[arg-type]
