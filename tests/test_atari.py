"""Atari games as pixel envs (``worldflux.envs.atari``): the downscaling, both env checkers,
seeded reproducibility, CNN behaviour policies loaded without unpickling, and the compressed
frames of a written dataset."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from stable_baselines3 import PPO
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import worldflux  # noqa: F401  (registers the ids)
from worldflux.core.errors import ConfigError
from worldflux.envs.atari import SCREEN, AtariEnv, area_taps, area_weights

pytest.importorskip("ale_py")


def test_area_weights_average_blocks_and_taps_match_the_matrix() -> None:
    rng = np.random.default_rng(0)
    for size_in, size_out in ((210, 64), (160, 64), (10, 3), (12, 4)):
        w = area_weights(size_in, size_out)
        np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-6)
        x = rng.normal(size=size_in).astype(np.float32)
        gathered = sum(wk * x[idx] for idx, wk in area_taps(w))
        np.testing.assert_allclose(gathered, w @ x, atol=1e-5)
    # an integer factor is a plain block mean
    np.testing.assert_allclose(area_weights(12, 4) @ np.arange(12.0), [1.0, 4.0, 7.0, 10.0])
    env = AtariEnv("Breakout", size=32)
    screen = rng.integers(0, 256, (*SCREEN, 3), dtype=np.uint8)
    frame = env._frame(screen)  # 160 -> 32 columns is a factor of 5
    cols = screen.astype(np.float64).reshape(210, 32, 5, 3).mean(2)
    expected = np.einsum("ih,hjc->ijc", area_weights(210, 32).astype(np.float64), cols)
    assert frame.dtype == np.uint8 and frame.shape == (32, 32, 3)
    assert np.abs(frame - np.rint(expected)).max() <= 1
    env.close()


@pytest.mark.parametrize("env_id", ["WorldFlux/Breakout64-v0", "WorldFlux/Pong64-v0"])
def test_registered_atari_envs_pass_both_checkers(env_id: str) -> None:
    env = gym.make(env_id, render_mode="rgb_array")
    check_env(env.unwrapped)
    sb3_check_env(env)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
    assert isinstance(env.action_space, gym.spaces.Discrete)
    assert env.render().shape == (*SCREEN, 3)
    assert env.spec is not None and env.spec.max_episode_steps == 27_000
    env.close()


def test_seeds_reproduce_frames_under_sticky_actions() -> None:
    def play(seed: int) -> np.ndarray:
        env = gym.make("WorldFlux/Breakout64-v0")
        frames = [env.reset(seed=seed)[0]]
        for action in np.random.default_rng(1).integers(0, 4, 60):
            frames.append(env.step(int(action))[0])
        env.close()
        return np.stack(frames)

    a, b, c = play(0), play(0), play(1)
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(a.reshape(len(a), -1), axis=0)) > 10  # the game moves
    assert not np.array_equal(a, c)  # another seed, other sticky repeats


def test_bad_settings_and_actions_are_named() -> None:
    with pytest.raises(ConfigError, match="size: expected an int in"):
        AtariEnv(size=4)
    with pytest.raises(ConfigError, match="frameskip: expected an int >= 1"):
        AtariEnv(frameskip=0)
    with pytest.raises(ConfigError, match="repeat_action_probability"):
        AtariEnv(repeat_action_probability=1.0)
    with pytest.raises(ConfigError, match="no game 'NoSuchGame'"):
        AtariEnv("NoSuchGame")
    env = AtariEnv()
    env.reset(seed=0)
    with pytest.raises(ConfigError, match=r"expected an action in Discrete\(4\), got 7"):
        env.step(7)
    env.close()


def test_cnn_behaviour_policy_loads_without_unpickling(tmp_path: Path) -> None:
    """A PPO with SB3's CNN on HWC frames: the safe loader rebuilds it for the channel-first
    frames SB3 trained it on, and the project's policy samples from the same distribution."""
    from worldflux.data.collect import SB3Policy
    from worldflux.data.sb3_policy import load_sb3_policy

    env = gym.make("WorldFlux/Breakout64-v0")
    model = PPO("CnnPolicy", env, n_steps=32, batch_size=32, n_epochs=1, seed=0)
    model.learn(32)
    path = tmp_path / "breakout.zip"
    model.save(path)
    policy = load_sb3_policy(path, env)
    assert policy.observation_space.shape == (3, 64, 64)
    frames = np.stack([env.reset(seed=s)[0] for s in range(3)])  # [3, 64, 64, 3]
    with torch.no_grad():
        want = model.policy.get_distribution(model.policy.obs_to_tensor(frames)[0])
        got = policy.get_distribution(policy.obs_to_tensor(frames)[0])
    torch.testing.assert_close(got.distribution.probs, want.distribution.probs)
    sampler = SB3Policy.from_file(path, env, sample=True, seed=0)
    actions, info = sampler.act(frames)
    assert actions.shape == (3,) and env.action_space.contains(int(actions[0]))
    expected = want.distribution.log_prob(torch.as_tensor(actions))
    np.testing.assert_allclose(info["action_log_prob"], expected.numpy(), rtol=1e-5)
    env.close()


def test_written_frames_are_compressed_and_read_back_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import h5py
    import minari

    from worldflux.data.collect import RandomPolicy, rollout_episodes, write_dataset
    from worldflux.data.provider import MinariBatchProvider

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    env_id = "WorldFlux/Breakout64-v0"
    space = gym.make(env_id).action_space
    episodes = rollout_episodes(
        env_id, RandomPolicy(space, 0), steps=400, n_envs=2, seed=0, progress=False
    )
    target = write_dataset(
        "test/breakout/random-v0", env_id, episodes, algorithm_name="random", description="t"
    )
    frames = sum(len(ep["observations"]) for ep in episodes)
    size = sum(f.stat().st_size for f in target.rglob("*.hdf5"))
    assert size < 0.25 * frames * 64 * 64 * 3, (size, frames)  # raw frames: 12 KB each
    with h5py.File(next(target.rglob("*.hdf5"))) as fh:
        assert fh["episode_0/observations"].compression == "gzip"
    loaded = list(minari.load_dataset("test/breakout/random-v0").iterate_episodes())
    for ep, back in zip(episodes, loaded, strict=True):
        np.testing.assert_array_equal(back.observations, ep["observations"])
        np.testing.assert_array_equal(back.actions, ep["actions"])
    batch = MinariBatchProvider("test/breakout/random-v0", validation_fraction=0.0).sample(4, 8)
    assert batch.obs.shape == (4, 9, 3, 64, 64) and batch.obs.dtype == torch.uint8


@pytest.mark.parametrize("game", ["breakout", "pong"])
def test_atari_recipes_and_the_committed_behaviour_policies(game: str) -> None:
    from worldflux.data.collect import SB3Policy
    from worldflux.data.pipeline import CollectSpec, MixSpec
    from worldflux.data.recipes import recipe_spec

    mixed = recipe_spec(f"{game}-mixed")
    assert isinstance(mixed, MixSpec)
    assert [p.recipe for p in mixed.parts] == [
        f"{game}-{p}" for p in ("replay", "played", "random")
    ]
    replay, played = recipe_spec(f"{game}-replay"), recipe_spec(f"{game}-played")
    assert isinstance(replay, CollectSpec) and isinstance(played, CollectSpec)
    assert replay.mode == "replay" and replay.actions == "sampled"  # a mean action can stall
    assert replay.train is not None and not replay.train.normalize  # the CNN scales pixels
    assert played.actions == "sampled" and Path(played.policy).is_file()
    env = gym.make(mixed.env_id)
    policy = SB3Policy.from_file(played.policy, env, sample=True, seed=0)
    frames = np.stack([env.reset(seed=s)[0] for s in range(4)])
    actions, info = policy.act(frames)
    assert actions.shape == (4,) and all(env.action_space.contains(int(a)) for a in actions)
    assert np.all(info["action_log_prob"] <= 0.0)
    env.close()
