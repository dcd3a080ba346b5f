"""The replay buffer that mixes a dataset's transitions into every batch (MBPO/MOPO)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from worldflux.core.errors import ConfigError
from worldflux.rl.baselines import Transitions
from worldflux.rl.replay import DatasetMixReplayBuffer, ReplaySettings

OBS = spaces.Box(-np.inf, np.inf, (3,), np.float32)
ACT = spaces.Box(-1.0, 1.0, (2,), np.float32)


def dataset(n: int) -> Transitions:
    """Dataset rows are recognisable: observations >= 100, next = obs + 1, reward = -obs[0]."""
    obs = 100.0 + np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    return Transitions(
        obs=torch.from_numpy(obs),
        actions=torch.full((n, 2), 0.5),
        rewards=torch.from_numpy(-obs[:, 0].copy()),
        next_obs=torch.from_numpy(obs + 1.0),
        dones=torch.from_numpy((np.arange(n) % 2).astype(np.float32)),
    )


def filled_buffer(real_fraction: float) -> DatasetMixReplayBuffer:
    buffer = DatasetMixReplayBuffer(
        64, OBS, ACT, data=dataset(50), real_fraction=real_fraction, device="cpu", n_envs=2
    )
    rng = np.random.default_rng(0)
    for _ in range(20):  # dream rows: observations in [0, 1), reward 7, never done
        obs = rng.random((2, 3), dtype=np.float32)
        buffer.add(
            obs, obs, np.full((2, 2), -0.5, np.float32), np.full(2, 7.0), np.zeros(2), [{}, {}]
        )
    return buffer


def test_batches_draw_the_stated_share_from_the_dataset() -> None:
    np.random.seed(0)
    batch = filled_buffer(0.3).sample(100)
    assert all(t.dtype == torch.float32 and t.shape[0] == 100 for t in batch[:5])
    real = batch.observations[:, 0] >= 100
    assert int(real.sum()) == 30 and bool(real[:30].all())
    torch.testing.assert_close(batch.next_observations[real], batch.observations[real] + 1.0)
    torch.testing.assert_close(batch.rewards[real, 0], -batch.observations[real, 0])
    assert bool((batch.actions[real] == 0.5).all()) and bool((batch.actions[~real] == -0.5).all())
    assert bool((batch.rewards[~real] == 7.0).all()) and bool((batch.dones[~real] == 0).all())
    # dataset terminations are kept: odd rows of the dataset are terminal
    rows = ((batch.observations[real, 0] - 100) / 3).long()
    torch.testing.assert_close(batch.dones[real, 0], (rows % 2).float())


def test_without_a_real_fraction_batches_come_from_the_dream() -> None:
    batch = filled_buffer(0.0).sample(40)
    assert bool((batch.observations < 1).all())


def test_both_parts_are_normalised_with_the_envs_statistics() -> None:
    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    env = VecNormalize(DummyVecEnv([lambda: gym.make("Pendulum-v1")]), gamma=0.99)
    env.obs_rms.mean = np.full(3, 50.0)
    env.obs_rms.var = np.full(3, 4.0)
    env.ret_rms.var = np.array(9.0)
    np.random.seed(1)
    batch = filled_buffer(0.5).sample(20, env=env)
    raw = dataset(50).obs.numpy()
    expected = np.clip((raw - 50.0) / np.sqrt(4.0 + 1e-8), -10, 10)
    assert set(np.round(batch.observations[:10, 0].numpy(), 4)) <= set(np.round(expected[:, 0], 4))
    np.testing.assert_allclose(batch.rewards[10:].numpy(), 7.0 / np.sqrt(9.0 + 1e-8), rtol=1e-5)


def test_mismatched_datasets_and_fractions_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"expected observations \[N, \*\(3,\)\].*got \(50, 4\)"):
        data = dataset(50)
        data.obs = torch.zeros(50, 4)
        DatasetMixReplayBuffer(64, OBS, ACT, data=data, real_fraction=0.1, device="cpu")
    with pytest.raises(ConfigError, match=r"real_fraction: expected a number in \[0, 1\)"):
        DatasetMixReplayBuffer(64, OBS, ACT, data=dataset(5), real_fraction=-0.1, device="cpu")
    with pytest.raises(ConfigError, match="real_fraction: expected"):
        ReplaySettings(real_fraction=True)  # type: ignore[arg-type]
    assert not ReplaySettings().active and ReplaySettings(real_fraction=0.0).active
