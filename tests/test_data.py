"""The Minari data layer: time alignment, episode boundaries, splits, seeding, spaces, errors."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import minari
import numpy as np
import pytest
import synthetic_envs
import torch
from synthetic_envs import LIMIT, A, B, W

import worldflux as wf
from worldflux.core import ConfigError, ContractError
from worldflux.data import (
    DatasetNotFoundError,
    EpisodeStore,
    MinariBatchProvider,
    UnsupportedSpaceError,
)
from worldflux.data.collect import RandomPolicy, rollout_episodes, write_dataset
from worldflux.data.spaces import action_layout, observation_layout

synthetic_envs.register()
LINEAR = "test/linear/random-v0"
IMAGE = "test/image/random-v0"
CARTPOLE = "test/cartpole/random-v0"


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("minari")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(root))
        for env_id, dataset_id, steps in (
            ("WFTest/Linear-v0", LINEAR, 3000),
            ("WFTest/Image-v0", IMAGE, 120),
            ("CartPole-v1", CARTPOLE, 600),
        ):
            env = gym.make(env_id)
            eps = rollout_episodes(
                env_id,
                RandomPolicy(env.action_space, 0),
                steps=steps,
                n_envs=4,
                seed=0,
                progress=False,
            )
            write_dataset(dataset_id, env_id, eps, algorithm_name="random", description="test")
        yield root


def test_written_dataset_is_a_normal_minari_dataset(datasets: Path) -> None:
    ds = minari.load_dataset(LINEAR)
    assert ds.total_steps == 3000
    env = ds.recover_environment()
    assert env.spec is not None and env.spec.id == "WFTest/Linear-v0"
    ep = next(ds.iterate_episodes())
    assert len(ep.observations) == len(ep.actions) + 1


def test_time_alignment_is_exact(datasets: Path) -> None:
    """obs[t+1] = A obs[t] + B actions[t] and rewards[t] = w.actions[t] + 0.1 obs[t][0] for every
    real step: the reward and the next observation belong to the *current* action."""
    p = MinariBatchProvider(LINEAR, seed=1)
    batch = p.sample(256, 8)
    valid = batch.valid.bool().numpy()
    obs, act, rew = batch.obs.numpy(), batch.actions.numpy(), batch.rewards.numpy()
    pred_next = obs[:, :-1] @ A.T + act @ B.T
    pred_rew = act @ W + 0.1 * obs[:, :-1, 0]
    assert np.abs(pred_next - obs[:, 1:])[valid].max() < 1e-5
    assert np.abs(pred_rew - rew)[valid].max() < 1e-5
    # an off-by-one pairing (previous action) cannot explain the rewards
    shifted = act[:, :-1] @ W + 0.1 * obs[:, 1:-1, 0]
    assert np.abs(shifted - rew[:, 1:])[valid[:, 1:]].mean() > 0.5


def test_terminations_and_truncations_stay_distinct(datasets: Path) -> None:
    p = MinariBatchProvider(LINEAR, seed=2, validation_fraction=0.0)
    s = p.store
    term_rows = np.flatnonzero(s.terminations)
    trunc_rows = np.flatnonzero(s.truncations)
    assert len(term_rows) > 10 and len(trunc_rows) > 3
    _, after = s.obs_rows(np.arange(s.num_steps))
    # terminated exactly where the state left the box after the action, truncated exactly at
    # the 30-step time limit (both can happen on the same step, as in gymnasium)
    assert np.array_equal(s.terminations, np.abs(s.obs[after][:, 0]) > LIMIT)
    local = np.arange(s.num_steps) - s.step_starts[s.step_episode]
    last = local == s.lengths[s.step_episode] - 1
    assert bool(s.truncations[local == 29].all())
    assert not s.truncations[~last].any()  # episodes cut by the step budget end truncated too
    batch = p.sample(512, 30)
    cont, term, trunc = batch.continues, batch.terminations.float(), batch.truncations.float()
    assert torch.equal(cont, 1 - term)
    assert term.sum() > 0 and trunc.sum() > 0
    only_trunc = trunc.bool() & ~term.bool()
    assert bool((cont[only_trunc] == 1).all())  # a time limit is not an end of the world


def test_windows_never_cross_episode_boundaries(datasets: Path) -> None:
    p = MinariBatchProvider(LINEAR, seed=3, validation_fraction=0.0)
    batch = p.sample(1024, 30)
    mask = batch.mask
    assert mask is not None and 0 < float(mask.mean()) < 1
    m = mask.numpy().astype(bool)
    # the mask is a prefix: once a window leaves its episode it stays out
    assert bool((np.diff(m.astype(int), axis=1) <= 0).all())
    obs = batch.obs.numpy()
    act, rew = batch.actions.numpy(), batch.rewards.numpy()
    pred_next = obs[:, :-1] @ A.T + act @ B.T
    assert np.abs(pred_next - obs[:, 1:])[m].max() < 1e-5
    # padding: zero actions/rewards/flags; observations repeat the episode's last one
    assert not act[~m].any() and not rew[~m].any()
    assert not batch.terminations.numpy()[~m].any() and not batch.truncations.numpy()[~m].any()
    last_real = m.sum(1)  # index of the observation after the last real step
    for i in np.flatnonzero(~m.all(1))[:20]:
        assert np.array_equal(
            obs[i, last_real[i] :], np.repeat(obs[i, last_real[i]][None], 31 - last_real[i], 0)
        )
    # every step starts windows equally often, so terminal transitions are not under-sampled
    ends = batch.terminations.numpy() | batch.truncations.numpy()
    assert ends.any(1).mean() > 0.3


def test_transitions_and_seeded_reproducibility(datasets: Path) -> None:
    a, b = MinariBatchProvider(LINEAR, seed=7), MinariBatchProvider(LINEAR, seed=7)
    for _ in range(3):
        x, y = a.sample(32, 1), b.sample(32, 1)
        assert x.obs.shape == (32, 2, 2) and x.mask is None
        assert torch.equal(x.obs, y.obs) and torch.equal(x.actions, y.actions)
    c = MinariBatchProvider(LINEAR, seed=8)
    assert not torch.equal(a.sample(32, 4).obs, c.sample(32, 4).obs)
    # the sampler state resumes the exact sequence of batches
    state = a.state_dict()
    expected = a.sample(16, 5).obs
    c.load_state_dict(state)
    assert torch.equal(c.sample(16, 5).obs, expected)


def test_split_by_episode_and_train_only_statistics(datasets: Path) -> None:
    p = MinariBatchProvider(LINEAR, validation_fraction=0.25, split_seed=0)
    train, val = p.episodes["train"], p.episodes["validation"]
    assert len(np.intersect1d(train, val)) == 0
    assert len(train) + len(val) == p.store.num_episodes
    assert len(val) == round(0.25 * p.store.num_episodes)
    q = MinariBatchProvider(LINEAR, validation_fraction=0.25, split_seed=0, seed=99)
    assert np.array_equal(q.episodes["validation"], val)  # the split does not follow `seed`
    vb = p.get_batch(wf.BatchRequest(batch_size=64, seq_len=4, split="validation"))
    val_obs = p.store.obs[
        np.concatenate(
            [
                np.arange(p.store.obs_starts[e], p.store.obs_starts[e] + p.store.lengths[e] + 1)
                for e in val
            ]
        )
    ]
    starts = vb.obs[:, 0].numpy()
    assert all((np.abs(val_obs - o).sum(1) == 0).any() for o in starts)
    steps = p._steps["train"]
    assert np.allclose(p.stats.action_mean, p.store.actions[steps].mean(0), atol=1e-6)
    assert p.stats.obs_std is not None and bool((p.stats.obs_std > 0).all())
    assert isinstance(p, wf.BatchProvider) and isinstance(p, wf.BatchProviderV2)


def test_end_fraction_draws_windows_that_hold_a_termination(datasets: Path) -> None:
    """A share of the sequences holds an episode's end at a position drawn inside the window;
    the rest start anywhere; a split without terminations is refused by name."""
    p = MinariBatchProvider(CARTPOLE, seed=3)  # random CartPole: every episode ends, ~22 steps
    batch = p.get_batch(wf.BatchRequest(batch_size=40, seq_len=6, end_fraction=0.25))
    ends = batch.terminations.bool()
    assert bool(ends[:10].any(1).all())
    assert len(set(ends[:10].float().argmax(1).tolist())) >= 3  # not always the last step
    uniform = p.get_batch(wf.BatchRequest(batch_size=400, seq_len=6))
    assert 0.1 < float(uniform.terminations.bool().any(1).float().mean()) < 0.5
    store = dataclasses.replace(p.store, terminations=np.zeros_like(p.store.terminations))
    endless = MinariBatchProvider.from_store(store)
    with pytest.raises(ConfigError, match=r"end_fraction=0.5: expected terminations .*got none"):
        endless.get_batch(wf.BatchRequest(batch_size=4, seq_len=3, end_fraction=0.5))
    with pytest.raises(ConfigError, match=r"end_fraction: expected a share in \[0, 1\], got 2"):
        wf.BatchRequest(batch_size=4, end_fraction=2)


def test_discrete_actions_are_one_hot(datasets: Path) -> None:
    p = MinariBatchProvider(CARTPOLE)
    batch = p.sample(64, 3)
    valid = batch.valid.bool()
    assert batch.actions.shape == (64, 3, 2)
    assert torch.equal(batch.actions.sum(-1)[valid], torch.ones(int(valid.sum())))
    assert set(batch.actions.unique().tolist()) <= {0.0, 1.0}


def test_image_observations_are_chw_uint8(datasets: Path) -> None:
    p = MinariBatchProvider(IMAGE, validation_fraction=0.0)
    batch = p.sample(8, 4)
    assert batch.obs.dtype == torch.uint8 and batch.obs.shape == (8, 5, 3, 6, 5)
    assert p.stats.obs_mean is None
    obs = batch.obs.numpy()
    assert bool((obs[:, :, 2, 0, 0] == 200).all())  # HWC marker at row 0, col 0 of channel 2
    # channel 1 of obs[t+1] shows actions[t] (one-hot of Discrete(3))
    act = batch.actions.numpy().argmax(-1)
    real = batch.valid.bool().numpy()
    assert np.array_equal(obs[:, 1:, 1, 3, 3][real], (10 * act)[real])
    assert np.array_equal(obs[:, 1:, 0, 0, 0][real], (obs[:, :-1, 0, 0, 0] + 1)[real])


def test_image_statistics_are_the_mean_frame_and_channel_spread(datasets: Path) -> None:
    p = MinariBatchProvider(IMAGE, validation_fraction=0.25, split_seed=0)
    s, train = p.store, p.episodes["train"]
    rows = np.concatenate(
        [np.arange(s.obs_starts[e], s.obs_starts[e] + s.lengths[e] + 1) for e in train]
    )
    frames = s.obs[rows].astype(np.float64) / 255.0  # every frame of the train split's episodes
    mean = frames.mean(0)
    std = np.sqrt(np.square(frames - mean).mean(axis=(0, 2, 3)))
    assert p.stats.image_mean is not None and p.stats.image_std is not None
    assert p.stats.image_mean.shape == (3, 6, 5) and p.stats.image_std.shape == (3,)
    np.testing.assert_allclose(p.stats.image_mean, mean, atol=1e-6)
    np.testing.assert_allclose(p.stats.image_std, np.maximum(std, 1e-6), rtol=1e-5)
    assert p.stats.image_mean[2, 0, 0] == pytest.approx(200 / 255)  # the constant marker
    vector = MinariBatchProvider(LINEAR)
    assert vector.stats.image_mean is None and vector.stats.image_std is None


def test_learning_through_the_data_layer(datasets: Path) -> None:
    """The toy family trained from the provider predicts rewards that depend on the current
    action; an off-by-one pipeline could not reach this error."""
    p = MinariBatchProvider(LINEAR, seed=0)
    torch.manual_seed(0)
    model = wf.create_world_model("toy:small", obs_shape=(2,), action_dim=2)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(300):
        loss = model.loss(p.sample(64, 3)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    val = p.get_batch(wf.BatchRequest(batch_size=512, seq_len=1, split="validation"))
    with torch.no_grad():
        out = model.decode(
            model.transition(model.encode(val.obs[:, 0]), val.actions[:, 0], deterministic=True)
        )
    rew_mse = float(((out.reward - val.rewards[:, 0]) ** 2).mean())
    assert rew_mse < 0.02 * float(val.rewards.var()), rew_mse


def test_unknown_dataset_lists_local_ids_and_folder(datasets: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        MinariBatchProvider("test/linear/randon-v0")
    msg = str(info.value)
    assert "Did you mean 'test/linear/random-v0'" in msg and str(datasets) in msg
    assert "test/cartpole/random-v0" in msg


def test_download_without_network_fails_fast(
    datasets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    start = time.time()
    with pytest.raises(DatasetNotFoundError, match="cannot be reached"):
        MinariBatchProvider("mujoco/walker2d/medium-v0", download=True)
    assert time.time() - start < 10


def test_missing_datasets_try_the_remote_and_say_how_to_build_or_place_them(
    datasets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worldflux.data import minari_io

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(DatasetNotFoundError) as info:
        MinariBatchProvider("mujoco/walker2d/medium-v0")  # no download= : tried by default
    msg = str(info.value)
    assert "downloading it failed" in msg and "cannot be reached" in msg
    assert f"place a Minari dataset folder at {datasets / 'mujoco/walker2d/medium-v0'}" in msg

    def no_network() -> None:
        raise AssertionError("the project's own datasets are never downloaded")

    monkeypatch.setattr(minari_io, "_check_remote_reachable", no_network)
    with pytest.raises(DatasetNotFoundError, match="worldflux collect --recipe hopper-medium"):
        MinariBatchProvider("worldflux/hopper/medium-v1")
    with pytest.raises(DatasetNotFoundError, match="Did you mean 'test/linear/random-v0'"):
        MinariBatchProvider("test/linear/randon-v0", download=False)


def test_seq_len_longer_than_every_episode_is_an_error(datasets: Path) -> None:
    p = MinariBatchProvider(LINEAR)
    longest = int(p.store.lengths[p.episodes["train"]].max())
    with pytest.raises(ConfigError, match=f"seq_len={longest + 1} is longer than every episode"):
        p.sample(4, longest + 1)
    p.sample(4, longest)


def test_unsupported_spaces_are_named() -> None:
    with pytest.raises(UnsupportedSpaceError, match=r"Unsupported observation space Dict\('pos'"):
        observation_layout(gym.make("WFTest/DictObs-v0").observation_space)
    with pytest.raises(UnsupportedSpaceError, match="Unsupported action space MultiDiscrete"):
        action_layout(gym.spaces.MultiDiscrete([2, 3]))
    with pytest.raises(UnsupportedSpaceError, match="float64"):
        observation_layout(gym.spaces.Box(0, 1, (4, 4, 3), np.float64))


def test_collecting_from_an_unsupported_env_fails_before_collecting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worldflux.data.pipeline import CollectSpec, collect_dataset

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    with pytest.raises(UnsupportedSpaceError, match="Dict"):
        collect_dataset(
            CollectSpec("WFTest/DictObs-v0", "test/dict/random-v0", steps=10), progress=False
        )
    assert not (tmp_path / "test").exists()


def test_episode_store_rejects_misaligned_episodes() -> None:
    obs_l, act_l = (
        observation_layout(gym.spaces.Box(-1, 1, (2,))),
        action_layout(gym.spaces.Box(-1, 1, (1,))),
    )

    def ep(n_obs: int = 4, n_act: int = 3, term: list[bool] | None = None) -> dict[str, np.ndarray]:
        return {
            "observations": np.zeros((n_obs, 2)),
            "actions": np.zeros((n_act, 1)),
            "rewards": np.zeros(n_act),
            "terminations": np.array(term if term is not None else [False] * n_act),
            "truncations": np.zeros(n_act, bool),
        }

    with pytest.raises(
        ContractError, match="episode 0: expected T\\+1 = 4 observations for T = 3 actions, got 3"
    ):
        EpisodeStore.from_episodes([ep(n_obs=3)], obs_l, act_l)
    with pytest.raises(ContractError, match="episode 1: episode ends .* at step 0 but has 3 steps"):
        EpisodeStore.from_episodes([ep(), ep(term=[True, False, False])], obs_l, act_l)
    bad = ep()
    bad["rewards"][1] = np.nan
    with pytest.raises(ContractError, match="episode 0: rewards contain NaN"):
        EpisodeStore.from_episodes([bad], obs_l, act_l)
    store = EpisodeStore.from_episodes([ep(), ep(n_obs=6, n_act=5)], obs_l, act_l)
    assert store.obs.shape == (10, 2) and list(store.obs_starts) == [0, 4]


def test_decoded_arrays_are_cached_and_invalidated(
    datasets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORLDFLUX_CACHE", str(tmp_path / "cache"))
    first = MinariBatchProvider(LINEAR)
    assert len(list((tmp_path / "cache" / "episodes").iterdir())) == 1
    calls = []
    original = EpisodeStore.from_episodes

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(EpisodeStore, "from_episodes", counting)
    second = MinariBatchProvider(LINEAR)
    assert calls == []  # served from the cache
    for name in ("obs", "actions", "rewards", "terminations", "truncations", "lengths"):
        assert np.array_equal(getattr(first.store, name), getattr(second.store, name))
    MinariBatchProvider(LINEAR, cache=False)
    assert calls == [1]
    # rewriting the dataset changes its files, so the cache is not used
    env = gym.make("WFTest/Linear-v0")
    eps = rollout_episodes(
        "WFTest/Linear-v0",
        RandomPolicy(env.action_space, 5),
        steps=300,
        n_envs=2,
        seed=5,
        progress=False,
    )
    write_dataset(
        "test/linear/rewritten-v0",
        "WFTest/Linear-v0",
        eps,
        algorithm_name="random",
        description="t",
    )
    MinariBatchProvider("test/linear/rewritten-v0")
    write_dataset(
        "test/linear/rewritten-v0",
        "WFTest/Linear-v0",
        eps[:3],
        algorithm_name="random",
        description="t",
        overwrite=True,
    )
    assert MinariBatchProvider("test/linear/rewritten-v0").store.num_episodes == 3


def test_unwritable_cache_warns_and_still_loads(
    datasets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("WORLDFLUX_CACHE", str(blocker))
    with pytest.warns(UserWarning, match="could not cache the decoded dataset"):
        p = MinariBatchProvider(LINEAR)
    assert p.store.num_steps == 3000
