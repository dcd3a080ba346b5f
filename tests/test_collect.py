"""`worldflux collect` and behaviour policies (SB3 files loaded without unpickling)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import minari
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

from worldflux.core.errors import ConfigError
from worldflux.data.collect import SB3Policy
from worldflux.data.pipeline import CollectSpec, MixSpec, collect_dataset
from worldflux.data.recipes import recipe_names, recipe_spec
from worldflux.data.sb3_policy import UnsafePolicyFileError, load_sb3_policy

SCRIPT = Path(sys.executable).parent / "worldflux"


@pytest.fixture(scope="module")
def ppo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("policy") / "cartpole.zip"
    model = PPO(
        "MlpPolicy",
        "CartPole-v1",
        n_steps=64,
        batch_size=32,
        seed=0,
        policy_kwargs={"net_arch": [16, 16]},
    )
    model.learn(128)
    model.save(path)
    return path


def test_sb3_policy_loads_without_unpickling(
    ppo_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pickle

    import cloudpickle

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("unpickling attempted")

    monkeypatch.setattr(cloudpickle, "loads", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    env = gym.make("CartPole-v1")
    policy = load_sb3_policy(ppo_file, env)
    monkeypatch.undo()
    reference = PPO.load(ppo_file)
    obs = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    assert np.array_equal(
        policy.predict(obs, deterministic=True)[0], reference.predict(obs, deterministic=True)[0]
    )
    for a, b in zip(
        policy.state_dict().values(), reference.policy.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def test_pickled_policy_kwargs_and_wrong_spaces_are_refused(ppo_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "softsign.zip"
    PPO(
        "MlpPolicy",
        "CartPole-v1",
        n_steps=64,
        batch_size=32,
        policy_kwargs={"activation_fn": torch.nn.Softsign},  # not among the named activations
    ).save(path)
    with pytest.raises(UnsafePolicyFileError, match="activation_fn is <class .*Softsign"):
        load_sb3_policy(path, gym.make("CartPole-v1"))
    with pytest.raises(
        UnsafePolicyFileError,
        match=r"saved observation_space has shape \(4,\), the environment's has \(3,\)",
    ):
        load_sb3_policy(ppo_file, gym.make("Pendulum-v1"))
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("data", "{}")
    with pytest.raises(UnsafePolicyFileError, match="not a stable-baselines3 model zip"):
        load_sb3_policy(bad, gym.make("CartPole-v1"))


def test_action_noise_is_scaled_and_clipped() -> None:
    env = gym.make("Pendulum-v1")

    class Zero:
        def predict(self, obs: np.ndarray, deterministic: bool = True) -> tuple[np.ndarray, None]:
            return np.zeros((len(obs), 1), np.float32), None

    noisy = SB3Policy(Zero(), env.action_space, action_noise=0.5, seed=0)
    actions = noisy(np.zeros((5000, 3), np.float32))
    assert abs(float(actions.std()) - 1.0) < 0.05  # 0.5 x half-range 2.0
    clipped = SB3Policy(Zero(), env.action_space, action_noise=5.0, seed=0)(
        np.zeros((1000, 3), np.float32)
    )
    assert float(clipped.max()) == 2.0 and float(clipped.min()) == -2.0


def test_discrete_action_noise_replaces_actions_at_random() -> None:
    """On a Discrete space, action_noise is the probability of a uniformly random action."""
    space = gym.spaces.Discrete(4)

    class Always2:
        def predict(self, obs: np.ndarray, deterministic: bool = True) -> tuple[np.ndarray, None]:
            return np.full(len(obs), 2), None

    actions = SB3Policy(Always2(), space, action_noise=0.4, seed=0)(np.zeros((8000, 3)))
    counts = np.bincount(actions, minlength=4) / len(actions)
    np.testing.assert_allclose(counts, [0.1, 0.1, 0.7, 0.1], atol=0.02)
    with pytest.raises(ConfigError, match=r"probability of a uniformly random action: expected in"):
        SB3Policy(Always2(), space, action_noise=1.5)


def _run(*args: str, root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MINARI_DATASETS_PATH": str(root)}
    return subprocess.run(
        [str(SCRIPT), "collect", *args], capture_output=True, text=True, env=env, timeout=600
    )


def test_collect_cli_random_file_and_train(ppo_file: Path, tmp_path: Path) -> None:
    res = _run("--recipe", "pendulum-random", "--quiet", "--json", root=tmp_path)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["steps"] == 10_000 and report["episodes"] >= 50
    res = _run(
        "CartPole-v1",
        "--dataset-id",
        "testest/cartpole/ppo-v0",
        "--policy",
        str(ppo_file),
        "--steps",
        "500",
        "--action-noise",
        "0",
        "--quiet",
        root=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    res = _run(
        "CartPole-v1",
        "--dataset-id",
        "testest/cartpole/replay-v0",
        "--train-steps",
        "256",
        "--mode",
        "replay",
        "--save-policy",
        str(tmp_path / "policy" / "cp.zip"),
        "--score-episodes",
        "3",
        "--ref-max-score",
        "500",
        "--n-envs",
        "2",
        "--quiet",
        "--json",
        root=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["steps"] >= 256
    assert "train_steps=256 runs 4,096 steps" in res.stderr  # PPO: 2 envs x n_steps 2048
    saved = tmp_path / "policy" / "cp.zip"
    with zipfile.ZipFile(saved) as archive:  # acting needs no optimiser state
        assert "policy.pth" in archive.namelist()
        assert not [n for n in archive.namelist() if n.endswith("optimizer.pth")]
    load_sb3_policy(saved, gym.make("CartPole-v1"))
    again = _run("--recipe", "pendulum-random", "--quiet", root=tmp_path)
    assert again.returncode != 0 and "already exists" in again.stderr

    os.environ["MINARI_DATASETS_PATH"] = str(tmp_path)
    try:
        ds = minari.load_dataset("worldflux/pendulum/random-v0")
        meta = ds.storage.metadata["worldflux"]
        assert meta["behaviour_policy"] == "random" and meta["random_return"]["episodes"] == 20
        assert ds.recover_environment().spec.id == "Pendulum-v1"
        replay = minari.load_dataset("testest/cartpole/replay-v0")
        replay_meta = replay.storage.metadata
        assert replay_meta["worldflux"]["spec"]["mode"] == "replay"
        assert replay_meta["worldflux"]["random_return"]["episodes"] == 3
        assert replay_meta["ref_max_score"] == 500.0
    finally:
        del os.environ["MINARI_DATASETS_PATH"]


def test_collect_cli_bad_arguments(tmp_path: Path) -> None:
    res = _run("CartPole-v1", root=tmp_path)
    assert res.returncode != 0 and "--dataset-id" in res.stderr
    res = _run("CartPole-v1", "--dataset-id", "t/x-v0", root=tmp_path)
    assert res.returncode != 0 and "not a valid Minari id" in res.stderr
    res = _run("CartPole-v1", "--dataset-id", "a/b-v0", "--train-steps", "64", "--mode",
               "replay", "--steps", "10", root=tmp_path)  # fmt: skip
    assert res.returncode != 0 and "expected no --steps, got --steps 10" in res.stderr
    res = _run("--recipe", "walker-medium", root=tmp_path)
    assert res.returncode != 0 and "Did you mean 'walker2d-medium'" in res.stderr


def test_recipes_are_consistent() -> None:
    names = recipe_names()
    assert {
        "walker2d-random",
        "walker2d-medium",
        "walker2d-medium-replay",
        "hopper-medium",
        "hopper-medium-replay",
        "halfcheetah-medium",
        "halfcheetah-medium-replay",
        "pendulum-random",
        "cartpole-random",
    } <= set(names)
    for name in names:
        spec = recipe_spec(name)
        assert spec.dataset_id.startswith("worldflux/")
    medium, replay = recipe_spec("walker2d-medium"), recipe_spec("walker2d-medium-replay")
    assert isinstance(medium, CollectSpec) and isinstance(replay, CollectSpec)
    assert medium.train is not None and medium.policy == medium.train.save_to
    assert replay.mode == "replay" and replay.train == medium.train
    for env in ("walker2d", "hopper", "halfcheetah"):  # like D4RL's: the policy's own noise
        spec = recipe_spec(f"{env}-medium")
        assert isinstance(spec, CollectSpec) and spec.actions == "sampled"
    cheetah = recipe_spec("halfcheetah-medium")  # PPO plateaued below the medium band
    assert isinstance(cheetah, CollectSpec) and cheetah.train is not None
    assert cheetah.train.algo == "sac" and Path(cheetah.policy).is_file()
    mixed = recipe_spec("walker2d-mixed")
    assert isinstance(mixed, MixSpec)
    assert [p.recipe for p in mixed.parts] == [
        "walker2d-medium-replay",
        "walker2d-medium-deterministic",
        "walker2d-random",
    ]
    assert [p.steps for p in mixed.parts] == [None, 400_000, 100_000]


def test_mixed_recipe_takes_whole_episodes_of_its_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mixed recipe builds its missing parts, then keeps whole episodes in order until each
    part's step budget (all of a part without one)."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    recipes = {
        "behaviour": {},
        "dataset": {
            "a": {"env": "CartPole-v1", "dataset_id": "test/cartpole/a-v0", "steps": 300},
            "b": {"env": "CartPole-v1", "dataset_id": "test/cartpole/b-v0", "steps": 200},
            "mix": {
                "env": "CartPole-v1",
                "dataset_id": "test/cartpole/mix-v0",
                "policy": "mix",
                "parts": [{"recipe": "a", "steps": 50}, {"recipe": "b"}],
            },
            "loop": {
                "env": "CartPole-v1",
                "dataset_id": "test/cartpole/loop-v0",
                "policy": "mix",
                "parts": [{"recipe": "mix"}],
            },
            "typo": {
                "env": "CartPole-v1",
                "dataset_id": "test/cartpole/typo-v0",
                "policy": "mix",
                "parts": [{"recipe": "aa"}],
            },
        },
    }
    spec = recipe_spec("mix", recipes)
    assert isinstance(spec, MixSpec)
    report = collect_dataset(spec, progress=False)
    a, b, mix = (minari.load_dataset(f"test/cartpole/{n}-v0") for n in ("a", "b", "mix"))
    a_lengths = [len(ep.actions) for ep in a.iterate_episodes()]
    taken = next(i for i in range(1, len(a_lengths) + 1) if sum(a_lengths[:i]) >= 50)
    expected = a_lengths[:taken] + [len(ep.actions) for ep in b.iterate_episodes()]
    got = [len(ep.actions) for ep in mix.iterate_episodes()]
    assert got == expected and report.steps == sum(expected)
    first_a, first_mix = next(a.iterate_episodes()), next(mix.iterate_episodes())
    np.testing.assert_array_equal(first_a.observations, first_mix.observations)
    parts = mix.storage.metadata["worldflux"]["parts"]
    assert [(p["recipe"], p["episodes"]) for p in parts] == [("a", taken), ("b", b.total_episodes)]
    # the return of whole games only: b's last episode was cut by its step budget
    ended = [ep.rewards.sum() for ep in mix.iterate_episodes() if ep.terminations[-1]]
    assert len(ended) < len(got)
    returns = mix.storage.metadata["worldflux"]["dataset_return"]
    assert returns["mean"] == pytest.approx(np.mean(ended))
    with pytest.raises(ConfigError, match="itself a mixed recipe"):
        recipe_spec("loop", recipes)
    with pytest.raises(ConfigError, match="Did you mean 'a'"):
        recipe_spec("typo", recipes)


def test_rollout_episodes_gives_each_environment_its_share() -> None:
    from worldflux.data.collect import RandomPolicy, rollout_episodes

    env = gym.make("CartPole-v1")
    eps = rollout_episodes(
        "CartPole-v1",
        RandomPolicy(env.action_space, 0),
        episodes=7,
        n_envs=3,
        seed=0,
        progress=False,
    )
    assert len(eps) == 7 and all(not bool(ep["cut"]) for ep in eps)


def test_sampled_actions_follow_the_policy_and_store_its_log_probabilities(
    tmp_path: Path,
) -> None:
    from stable_baselines3 import SAC

    env = gym.make("Pendulum-v1")
    ppo = PPO("MlpPolicy", env, seed=0, policy_kwargs={"net_arch": [16], "log_std_init": -0.5})
    sampled = SB3Policy(ppo.policy, env.action_space, sample=True, seed=0)
    obs = np.random.default_rng(1).normal(size=(20_000, 3)).astype(np.float32)
    actions, info = sampled.act(obs)
    assert actions.shape == (20_000, 1) and set(info) == {
        "action_log_prob",
        "action_mean",
        "action_log_std",
    }
    assert np.all(np.abs(actions) <= 2.0)  # clipped to the action space, as SB3 acts
    # inside the bounds the stored log-probability is the policy's own density of the action
    inside = np.abs(actions[:, 0]) < 2.0
    with torch.no_grad():
        _, log_prob, _ = ppo.policy.evaluate_actions(
            torch.as_tensor(obs[inside]), torch.as_tensor(actions[inside])
        )
    np.testing.assert_allclose(info["action_log_prob"][inside], log_prob.numpy(), atol=1e-4)
    z = (actions[inside] - info["action_mean"][inside]) / np.exp(info["action_log_std"][inside])
    assert abs(float(z.std()) - 1.0) < 0.05 and abs(float(z.mean())) < 0.05
    # the same seed draws the same actions; deterministic policies cannot be sampled
    again, _ = SB3Policy(ppo.policy, env.action_space, sample=True, seed=0).act(obs)
    assert np.array_equal(actions, again)
    with pytest.raises(ConfigError, match="expected action_noise=0 with sample=True"):
        SB3Policy(ppo.policy, env.action_space, sample=True, action_noise=0.1)
    with pytest.raises(ConfigError, match="needs a stochastic SB3 policy"):
        SB3Policy(object(), env.action_space, sample=True)

    # SAC: squashed Gaussian; the log-probability is SB3's density of the squashed action
    sac = SAC("MlpPolicy", env, seed=0, policy_kwargs={"net_arch": [16]})
    actions, info = SB3Policy(sac.policy, env.action_space, sample=True, seed=0).act(obs[:512])
    assert np.all(np.abs(actions) <= 2.0)
    with torch.no_grad():
        dist = sac.policy.actor.action_dist
        mean, log_std, _ = sac.policy.actor.get_action_dist_params(torch.as_tensor(obs[:512]))
        dist.proba_distribution(mean, log_std)
        squashed = torch.as_tensor(sac.policy.scale_action(actions))
        expected = dist.log_prob(squashed)
    np.testing.assert_allclose(info["action_log_prob"], expected.numpy(), atol=2e-3, rtol=1e-3)

    # the dataset stores them in Minari's infos, aligned with observations (last row NaN)
    policy_file = tmp_path / "pendulum-ppo.zip"
    ppo.save(policy_file)
    os.environ["MINARI_DATASETS_PATH"] = str(tmp_path / "data")
    try:
        spec = CollectSpec(
            env_id="Pendulum-v1",
            dataset_id="testest/pendulum/sampled-v0",
            policy=str(policy_file),
            actions="sampled",
            steps=450,
            n_envs=2,
            score_episodes=2,
        )
        report = collect_dataset(spec, progress=False)
        assert report.steps == 450
        ds = minari.load_dataset("testest/pendulum/sampled-v0")
        assert "sampled actions" in ds.storage.metadata["worldflux"]["behaviour_policy"]
        for ep in ds.iterate_episodes():
            log_prob = np.asarray(ep.infos["action_log_prob"])
            assert log_prob.shape == (len(ep.actions) + 1,)
            assert np.isfinite(log_prob[:-1]).all() and np.isnan(log_prob[-1])
            assert np.asarray(ep.infos["action_mean"]).shape == (len(ep.actions) + 1, 1)
    finally:
        del os.environ["MINARI_DATASETS_PATH"]
    with pytest.raises(ConfigError, match="needs a trained policy"):
        CollectSpec(env_id="Pendulum-v1", dataset_id="a/b-v0", actions="sampled")


def test_malicious_policy_zips_get_one_clear_refusal(ppo_file: Path, tmp_path: Path) -> None:
    """Nothing in a policy zip is executed; what cannot be read safely is refused with a message
    that says what was found (never torch's hint to unpickle it)."""
    import pickle

    def rewrite(name: str, **parts: bytes) -> Path:
        out = tmp_path / name
        with zipfile.ZipFile(ppo_file) as src, zipfile.ZipFile(out, "w") as dst:
            for item in src.namelist():
                dst.writestr(item, parts.get(item.replace(".", "_"), src.read(item)))
        return out

    class Runs:  # unpickling this would run `touch` on a marker file
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    data = json.loads(zipfile.ZipFile(ppo_file).read("data"))
    data["policy_kwargs"] = {"net_arch": [16, 16], "activation_fn": {"module": "os"}}
    buffer = io.BytesIO()
    torch.save({"weights": [1, 2]}, buffer)
    env = gym.make("CartPole-v1")
    cases = {
        "kwargs.zip": ({"data": json.dumps(data).encode()}, "policy_kwargs .* do not build"),
        "pickle.zip": ({"policy_pth": pickle.dumps(Runs())}, "holds more than tensors"),
        "notensors.zip": ({"policy_pth": buffer.getvalue()}, "expected a state dict of named"),
    }
    for name, (parts, message) in cases.items():
        with pytest.raises(UnsafePolicyFileError, match=message) as info:
            load_sb3_policy(rewrite(name, **parts), env)
        assert "weights_only" not in str(info.value)
    assert not (tmp_path / "ran").exists()


def test_collect_cli_actions_flag_reaches_the_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    import worldflux.cli as cli

    seen: list[CollectSpec] = []

    def fake(spec: CollectSpec, **kwargs: Any) -> Any:
        seen.append(spec)
        raise SystemExit(0)

    monkeypatch.setattr("worldflux.data.pipeline.collect_dataset", fake)
    with pytest.raises(SystemExit):
        cli.main(["collect", "CartPole-v1", "--dataset-id", "a/b-v0", "--policy", "p.zip",
                  "--actions", "sampled"])  # fmt: skip
    assert seen and seen[0].actions == "sampled"


def test_written_datasets_are_compact_and_read_back_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Short episodes in Minari's own HDF5 layout are mostly bookkeeping; the written file keeps
    every value and dtype at under half the bytes (InvertedDoublePendulum: ~10-step episodes)."""
    import minari

    import worldflux.data.collect as collect
    from worldflux.data.collect import RandomPolicy, rollout_episodes, write_dataset

    env_id = "InvertedDoublePendulum-v5"
    space = gym.make(env_id).action_space
    episodes = rollout_episodes(
        env_id, RandomPolicy(space, 0), steps=3000, n_envs=4, seed=0, progress=False
    )
    sizes = {}
    for name, compact in (("minari", False), ("compact", True)):
        monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / name))
        if not compact:
            monkeypatch.setattr(collect, "compact_hdf5", lambda path: (0, 0))
        target = write_dataset(
            f"test/idp/{name}-v0", env_id, episodes, algorithm_name="random", description="idp"
        )
        sizes[name] = sum(f.stat().st_size for f in target.rglob("*.hdf5"))
        monkeypatch.undo()
    assert sizes["compact"] < 0.5 * sizes["minari"], sizes
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "compact"))
    loaded = list(minari.load_dataset("test/idp/compact-v0").iterate_episodes())
    assert len(loaded) == len(episodes)
    for ep, back in zip(episodes, loaded, strict=True):
        np.testing.assert_array_equal(back.observations, ep["observations"])
        np.testing.assert_array_equal(back.actions, ep["actions"])
        np.testing.assert_array_equal(back.rewards, ep["rewards"])
        np.testing.assert_array_equal(back.terminations, ep["terminations"])
        assert back.observations.dtype == ep["observations"].dtype
