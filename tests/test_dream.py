"""Dream environments: the three faces over one batched core, seeding, resets, bad input,
artifacts and cards. Models here are small and untrained: these tests are about the
environment contract, not fidelity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import worldflux as wf
from worldflux.core.errors import ConfigError
from worldflux.dream import (
    DreamActionError,
    DreamEnv,
    DreamSettings,
    DreamVectorEnv,
    LearnedSimulator,
    ResetStates,
    make_dream_env,
)
from worldflux.dream.cards import load_cards, read_card
from worldflux.dream.noise import counter_noise, counter_uniform
from worldflux.dream.simulator import space_from_json, space_to_json

OBS_DIM, ACT_DIM = 5, 2


def vector_sim(**defaults: Any) -> LearnedSimulator:
    torch.manual_seed(0)
    model = wf.create_world_model("dreamerv3:tiny", obs_shape=(OBS_DIM,), action_dim=ACT_DIM)
    rng = np.random.default_rng(0)
    return LearnedSimulator(
        model=model,
        observation_space=spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float64),
        action_space=spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32),
        reset_states=ResetStates(
            start=rng.normal(size=(20, OBS_DIM)).astype(np.float32),
            any=rng.normal(size=(200, OBS_DIM)).astype(np.float32),
        ),
        defaults={"horizon": 25, **defaults},
        source_env=None,
    )


def image_sim() -> LearnedSimulator:
    torch.manual_seed(0)
    model = wf.create_world_model("dreamerv3:tiny", obs_shape=(3, 16, 16), action_dim=4)
    rng = np.random.default_rng(0)
    pool = rng.integers(0, 256, size=(10, 3, 16, 16), dtype=np.uint8)
    return LearnedSimulator(
        model=model,
        observation_space=spaces.Box(0, 255, (16, 16, 3), np.uint8),
        action_space=spaces.Discrete(4),
        reset_states=ResetStates(start=pool, any=pool),
        defaults={"horizon": 10},
    )


@pytest.fixture(scope="module")
def sim() -> LearnedSimulator:
    return vector_sim()


def with_continue_bias(sim: LearnedSimulator, bias: float) -> LearnedSimulator:
    """``sim`` whose continue head always says ``sigmoid(bias)``."""
    head = sim.model.component("decoder").cont[-1]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(bias)
    return sim


def test_counter_noise_is_a_pure_function_with_sane_statistics() -> None:
    keys = np.arange(4000, dtype=np.uint64)
    counters = np.full(4000, 7, np.uint64)
    u = counter_uniform(keys, counters, 8)
    assert u.dtype == np.float32 and u.shape == (4000, 8)
    assert u.min() >= 0.0 and u.max() < 1.0 and abs(u.mean() - 0.5) < 0.01
    np.testing.assert_array_equal(u[5:9], counter_uniform(keys[5:9], counters[5:9], 8))
    assert not np.array_equal(u, counter_uniform(keys, counters + np.uint64(1), 8))
    spec = {"z": wf.NoiseSpec((3,), "normal"), "u": wf.NoiseSpec((2,), "uniform")}
    noise, extra = counter_noise(spec, keys, counters, extra=1)
    assert (
        noise["z"].shape == (4000, 3) and noise["u"].shape == (4000, 2) and extra.shape == (4000, 1)
    )
    assert abs(noise["z"].mean()) < 0.05 and abs(noise["z"].std() - 1.0) < 0.05


@pytest.mark.parametrize("make", [vector_sim, image_sim], ids=["vector-box", "image-discrete"])
def test_single_env_passes_gymnasium_and_sb3_checkers(make: Any) -> None:
    env = make_dream_env(make())
    assert isinstance(env, DreamEnv)
    gym_check_env(env, skip_render_check=True)
    sb3_check_env(env, warn=True)
    obs, _ = env.reset(seed=0)
    assert obs in env.observation_space
    obs, reward, *_, info = env.step(env.action_space.sample())
    assert obs in env.observation_space and isinstance(reward, float)
    assert {"wf.raw_reward", "wf.penalty", "wf.halted"} <= set(info)


def _run_singles(sim: LearnedSimulator, seeds: list[int], actions: np.ndarray) -> np.ndarray:
    """Observations of N single envs under next-step autoreset semantics: ``[T, N, D]``."""
    out = np.zeros((actions.shape[0], len(seeds), OBS_DIM))
    for i, seed in enumerate(seeds):
        env = make_dream_env(sim)
        env.reset(seed=seed)
        done = False
        for t in range(actions.shape[0]):
            if done:
                obs, _ = env.reset()
                done = False
            else:
                obs, _, term, trunc, _ = env.step(actions[t, i])
                done = term or trunc
            out[t, i] = obs
    return out


def test_vector_env_equals_single_envs_for_the_same_seeds(sim: LearnedSimulator) -> None:
    n, steps = 6, 60  # horizon 25: every env truncates (and resets) at least twice
    actions = np.random.default_rng(1).uniform(-1, 1, size=(steps, n, ACT_DIM)).astype(np.float32)
    venv = make_dream_env(sim, num_envs=n)
    assert isinstance(venv, DreamVectorEnv)
    venv.reset(seed=100)
    vec = np.stack([venv.step(actions[t])[0] for t in range(steps)])
    singles = _run_singles(sim, [100 + i for i in range(n)], actions)
    np.testing.assert_allclose(vec, singles, rtol=1e-5, atol=1e-5)
    # reseeding reproduces the trajectory exactly
    venv.reset(seed=100)
    again = np.stack([venv.step(actions[t])[0] for t in range(steps)])
    np.testing.assert_array_equal(vec, again)


def test_vector_autoreset_modes() -> None:
    sim = with_continue_bias(vector_sim(), 20.0)  # episodes end by truncation only
    act = np.zeros((3, ACT_DIM), np.float32)
    same = make_dream_env(sim, num_envs=3, autoreset_mode="SameStep", horizon=2)
    same.reset(seed=0)
    same.step(act)
    obs, _, _, truncated, info = same.step(act)
    assert truncated.all() and info["_final_obs"].all()
    assert not np.allclose(info["final_obs"][0], obs[0])
    nxt = make_dream_env(sim, num_envs=3, autoreset_mode="NextStep", horizon=2)
    nxt.reset(seed=0)
    nxt.step(act)
    nxt.step(act)
    obs, reward, terminated, truncated, info = nxt.step(act)  # the reset step
    assert (reward == 0).all() and not (terminated | truncated).any()
    assert not info["_wf.raw_reward"].any()
    off = make_dream_env(sim, num_envs=3, autoreset_mode="Disabled", horizon=2)
    off.reset(seed=0)
    off.step(act)
    off.step(act)
    first, _ = off.reset(options={"reset_mask": np.array([True, False, False])})
    assert first.shape == (3, OBS_DIM)
    with pytest.raises(ConfigError, match="autoreset_mode"):
        make_dream_env(sim, num_envs=2, autoreset_mode="Sometimes")


def test_gym_make_vec_and_registration_through_a_card(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exports = tmp_path / "exports"
    vector_sim().save_artifact(exports / "test-dream-v0")
    cards = tmp_path / "envs"
    cards.mkdir()
    (cards / "test-dream.toml").write_text(
        'id = "WorldFluxTest/Dream-v0"\nsource_env = "none"\ndataset_recipe = "none"\n'
        'model = "dreamerv3:tiny"\nartifact = "test-dream-v0"\nhorizon = 7\n'
        '[defaults]\ntermination = "threshold"\n'
    )
    from worldflux import resources

    monkeypatch.setattr(
        resources, "data_dir", lambda name: {"envs": cards, "exports": exports}[name]
    )
    from worldflux.dream import register_cards

    assert "WorldFluxTest/Dream-v0" in register_cards()
    try:
        env = gym.make("WorldFluxTest/Dream-v0")
        env.reset(seed=0)
        steps = 0
        while True:
            steps += 1
            _, _, term, trunc, _ = env.step(env.action_space.sample())
            if term or trunc:
                break
        assert steps <= 7
        venv = gym.make_vec("WorldFluxTest/Dream-v0", num_envs=4)
        assert isinstance(venv.unwrapped, DreamVectorEnv)
        assert venv.unwrapped.core.settings.horizon == 7
        assert venv.unwrapped.core.settings.termination == "threshold"
        obs, _ = venv.reset(seed=0)
        assert obs.shape == (4, OBS_DIM)
    finally:
        del gym.registry["WorldFluxTest/Dream-v0"]


def test_sb3_vecenv_sets_terminal_observation_and_timelimit(sim: LearnedSimulator) -> None:
    from stable_baselines3.common.vec_env import VecMonitor, VecNormalize

    venv = make_dream_env(
        with_continue_bias(vector_sim(), 20.0), num_envs=4, vectorization="sb3", horizon=3
    )
    venv.seed(5)
    obs = venv.reset()
    assert obs.shape == (4, OBS_DIM)
    act = np.zeros((4, ACT_DIM), np.float32)
    for _ in range(2):
        venv.step_async(act)
        _, _, dones, infos = venv.step_wait()
    venv.step_async(act)
    obs, rewards, dones, infos = venv.step_wait()
    assert dones.all() and rewards.dtype == np.float32
    for i in range(4):
        assert infos[i]["TimeLimit.truncated"] is True
        assert infos[i]["terminal_observation"].shape == (OBS_DIM,)
        assert not np.allclose(infos[i]["terminal_observation"], obs[i])
    wrapped = VecNormalize(VecMonitor(make_dream_env(sim, num_envs=4, vectorization="sb3")))
    wrapped.reset()
    for _ in range(30):
        wrapped.step(np.random.uniform(-1, 1, (4, ACT_DIM)).astype(np.float32))


@pytest.mark.parametrize("algo", ["PPO", "SAC"])
def test_sb3_agents_train_in_the_dream(sim: LearnedSimulator, algo: str) -> None:
    import stable_baselines3 as sb3

    venv = make_dream_env(sim, num_envs=4, vectorization="sb3")
    kwargs: dict[str, Any] = (
        {"n_steps": 64, "batch_size": 64} if algo == "PPO" else {"learning_starts": 64}
    )
    agent = getattr(sb3, algo)("MlpPolicy", venv, seed=0, device="cpu", **kwargs)
    agent.learn(total_timesteps=512)
    env = make_dream_env(sim)
    obs, _ = env.reset(seed=0)
    action, _ = agent.predict(obs, deterministic=True)
    env.step(action)


def test_bad_actions_get_clear_errors_or_the_documented_clip(sim: LearnedSimulator) -> None:
    env = make_dream_env(sim)
    env.reset(seed=0)
    with pytest.raises(DreamActionError, match="shape"):
        env.step(np.zeros(ACT_DIM + 1))
    with pytest.raises(DreamActionError, match="NaN"):
        env.step(np.array([np.nan, 0.0]))
    with pytest.raises(DreamActionError, match="NaN"):
        env.step(np.array([np.inf, 0.0]))
    # default: out-of-bounds actions are clipped to the Box (same step as the clipped action)
    env.reset(seed=3)
    clipped = env.step(np.array([5.0, -5.0]))[0]
    env.reset(seed=3)
    np.testing.assert_array_equal(clipped, env.step(np.array([1.0, -1.0]))[0])
    strict = make_dream_env(sim, out_of_bounds="error")
    strict.reset(seed=0)
    with pytest.raises(DreamActionError, match="outside the action space"):
        strict.step(np.array([1.5, 0.0]))
    discrete = make_dream_env(image_sim())
    discrete.reset(seed=0)
    with pytest.raises(DreamActionError, match=r"\[0, 4\)"):
        discrete.step(4)
    with pytest.raises(DreamActionError, match="integer"):
        discrete.step(0.5)


def test_reset_distributions_and_given_observations(sim: LearnedSimulator) -> None:
    env = make_dream_env(sim)
    starts = {tuple(env.reset(seed=s)[0].round(5)) for s in range(40)}
    assert starts <= {tuple(o) for o in sim.reset_states.start.astype(np.float64).round(5)}
    anywhere = make_dream_env(sim, reset="any")
    obs, _ = anywhere.reset(seed=1)
    assert any(np.allclose(obs, o) for o in sim.reset_states.any)
    given = np.arange(OBS_DIM, dtype=np.float64)
    obs, _ = env.reset(seed=0, options={"obs": given})
    np.testing.assert_array_equal(obs, given)
    with pytest.raises(ConfigError, match="unknown keys"):
        env.reset(options={"observation": given})
    with pytest.raises(ConfigError, match="shape"):
        env.reset(options={"obs": given[:3]})
    venv = make_dream_env(sim, num_envs=2)
    obs, _ = venv.reset(seed=0, options={"obs": np.stack([given, -given])})
    np.testing.assert_array_equal(obs[1], -given)


def test_settings_are_checked_and_pessimism_needs_uncertainty(sim: LearnedSimulator) -> None:
    with pytest.raises(ConfigError, match="termination"):
        DreamSettings(termination="never")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown dream settings"):
        make_dream_env(sim, penalti=1.0)
    certain = vector_sim()  # a DreamerV3 model without its uncertainty and error heads
    certain.model = wf.create_world_model(
        "dreamerv3:tiny",
        obs_shape=(OBS_DIM,),
        action_dim=ACT_DIM,
        uncertainty_heads=0,
        error_heads=0,
    )
    with pytest.raises(ConfigError, match="uncertainty"):
        make_dream_env(certain, penalty=1.0)
    with pytest.raises(ConfigError, match="uncertainty"):
        make_dream_env(certain, halt=0.5)
    make_dream_env(sim, penalty=1.0, halt=0.5)  # heads on (the default): both work


def test_threshold_termination_ends_where_continue_is_low() -> None:
    sim = with_continue_bias(vector_sim(horizon=None), -20.0)  # every step terminates
    env = make_dream_env(sim, termination="threshold")
    env.reset(seed=0)
    assert env.step(np.zeros(ACT_DIM))[2] is True
    sampled = make_dream_env(sim)
    sampled.reset(seed=0)
    assert sampled.step(np.zeros(ACT_DIM))[2] is True


def test_random_rollout_stays_finite(sim: LearnedSimulator) -> None:
    venv = make_dream_env(sim, num_envs=1000)
    venv.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(100):  # 100k environment steps
        obs, reward, *_ = venv.step(rng.uniform(-1, 1, (1000, ACT_DIM)).astype(np.float32))
        assert np.isfinite(obs).all() and np.isfinite(reward).all()


def test_artifact_round_trip_reproduces_trajectories(sim: LearnedSimulator, tmp_path: Path) -> None:
    path = sim.save_artifact(tmp_path / "art")
    loaded = LearnedSimulator.from_artifact(path)
    assert loaded.observation_space == sim.observation_space
    actions = np.random.default_rng(0).uniform(-1, 1, (20, ACT_DIM)).astype(np.float32)

    def run(s: LearnedSimulator, backend: str) -> np.ndarray:
        # a vector env of one: episodes that end restart, so every action is stepped
        env = make_dream_env(s, backend=backend, num_envs=1)
        env.reset(seed=9)
        return np.stack([env.step(np.asarray(a)[None])[0][0] for a in actions])

    # the torch model round-trips bit for bit; the artifact's ONNX graphs agree closely
    np.testing.assert_array_equal(run(sim, "torch"), run(loaded, "torch"))
    np.testing.assert_allclose(run(loaded, "onnx"), run(sim, "torch"), atol=1e-4, rtol=0)
    assert make_dream_env(loaded).unwrapped.core.backend_name == "onnx"  # artifacts: ONNX
    low, high = np.array([-np.inf, 0.0], np.float32), np.array([1.0, np.inf], np.float32)
    box = spaces.Box(low, high, (2,), np.float32)
    assert space_from_json(space_to_json(box)) == box
    image = spaces.Box(0, 255, (64, 64, 3), np.uint8)
    assert space_to_json(image)["low"] == 0.0 and space_to_json(image)["high"] == 255.0
    assert space_from_json(space_to_json(image)) == image
    with pytest.raises(ConfigError, match="manifest.json"):
        LearnedSimulator.from_artifact(tmp_path)


def test_cards_are_checked(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'id = "X-v0"\nsource_env = "a"\ndataset_recipe = "b"\nmodel = "c"\nartifact = "d"\n'
        "horizon = 10\nhorizn = 5\n"
    )
    with pytest.raises(ConfigError, match="horizon"):
        read_card(bad)
    bad.write_text('id = "X-v0"\n')
    with pytest.raises(ConfigError, match="missing keys"):
        read_card(bad)
    bad.write_text(
        'id = "X-v0"\nsource_env = "a"\ndataset_recipe = "b"\nmodel = "c"\nartifact = "d"\n'
        'horizon = 10\n[defaults]\nreset = "middle"\n'
    )
    with pytest.raises(ConfigError, match="reset"):
        read_card(bad)
    bad.write_text(
        'id = "X-v0"\nsource_env = "a"\ndataset_recipe = "b"\nmodel = "c"\nartifact = "d"\n'
        'horizon = 10\nonnx = "no"\n'
    )
    with pytest.raises(ConfigError, match="onnx must be true or false, got 'no'"):
        read_card(bad)
    bad.write_text(bad.read_text().replace('onnx = "no"', "onnx = false"))
    assert read_card(bad).onnx is False
    for card in load_cards().values():  # the project's own cards are valid
        assert card.id.startswith("WorldFlux/")


def ensemble_sim(**calibration: float) -> LearnedSimulator:
    sim = vector_sim()
    torch.manual_seed(0)
    sim.model = wf.create_world_model("ensemble:tiny", obs_shape=(OBS_DIM,), action_dim=ACT_DIM)
    sim.calibration = dict(calibration)
    return sim


def test_pessimism_penalty_and_calibrated_halt() -> None:
    sim = ensemble_sim(p50=1e-6, p99=1e6)
    plain = make_dream_env(sim)
    plain.reset(seed=0)
    _, reward, _, _, info = plain.step(np.zeros(ACT_DIM))
    assert (
        info["wf.uncertainty"] > 0 and info["wf.penalty"] == 0 and reward == info["wf.raw_reward"]
    )
    penalised = make_dream_env(sim, penalty=2.0)
    penalised.reset(seed=0)
    _, reward, _, _, info = penalised.step(np.zeros(ACT_DIM))
    assert info["wf.penalty"] == pytest.approx(2.0 * info["wf.uncertainty"], rel=1e-5)
    assert reward == pytest.approx(info["wf.raw_reward"] - info["wf.penalty"], rel=1e-5)
    halting = make_dream_env(sim, halt="p50", termination="threshold")
    halting.reset(seed=0)
    _, _, terminated, _, info = halting.step(np.zeros(ACT_DIM))
    assert terminated and info["wf.halted"]
    lenient = make_dream_env(sim, halt="p99", termination="threshold")
    lenient.reset(seed=0)
    assert not lenient.step(np.zeros(ACT_DIM))[4]["wf.halted"]
    with pytest.raises(ConfigError, match="calibrated percentiles"):
        make_dream_env(sim, halt="p75")


def test_noise_scale_scales_the_gaussian_noise_only() -> None:
    """``noise_scale``: the first step's deviation from the elite's mean is linear in the scale
    (same seed, so the same elite and the same standard normals), and 0 gives the elite's mean.
    The ensemble's elite draw (uniform noise) is unchanged."""
    sim = ensemble_sim()
    sim.model = wf.create_world_model(
        "ensemble:tiny", obs_shape=(OBS_DIM,), action_dim=ACT_DIM, elites=1
    )
    action = np.full(ACT_DIM, 0.3, np.float32)

    def first_obs(scale: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        env = make_dream_env(sim, noise_scale=scale, backend="torch")
        obs0, _ = env.reset(seed=seed)
        return obs0, env.step(action)[0]

    obs0, full = first_obs(1.0, 0)
    _, half = first_obs(0.5, 0)
    _, none = first_obs(0.0, 0)
    model = sim.torch_model()
    with torch.no_grad():
        mean = (
            model.decode(
                model.transition(
                    model.encode(torch.as_tensor(obs0[None], dtype=torch.float32)),
                    torch.as_tensor(action[None]),
                    deterministic=True,
                )
            )
            .obs[0]
            .numpy()
        )
    np.testing.assert_allclose(none, mean, atol=1e-5)
    np.testing.assert_allclose(half - mean, 0.5 * (full - mean), atol=1e-4)
    assert np.abs(full - mean).max() > 1e-3  # the noise is really there at scale 1
    with pytest.raises(ConfigError, match="noise_scale: expected >= 0, got -1"):
        make_dream_env(sim, noise_scale=-1.0)


def test_uncertainty_percentiles_calibrate_on_held_out_transitions() -> None:
    from worldflux.data import EpisodeStore, MinariBatchProvider
    from worldflux.data.spaces import ActionLayout, ObservationLayout
    from worldflux.dream.simulator import uncertainty_percentiles

    rng = np.random.default_rng(0)
    episodes = [
        {
            "observations": rng.normal(size=(21, OBS_DIM)),
            "actions": rng.uniform(-1, 1, (20, ACT_DIM)),
            "rewards": rng.normal(size=20),
            "terminations": np.zeros(20, bool),
            "truncations": np.eye(20, dtype=bool)[-1],
        }
        for _ in range(20)
    ]
    store = EpisodeStore.from_episodes(
        episodes, ObservationLayout("vector", (OBS_DIM,)), ActionLayout("continuous", ACT_DIM)
    )
    data = MinariBatchProvider.from_store(store, validation_fraction=0.2)
    cal = uncertainty_percentiles(ensemble_sim().model, data)
    assert list(cal) == ["p50", "p90", "p95", "p99"]
    assert 0 < cal["p50"] <= cal["p90"] <= cal["p95"] <= cal["p99"]
    dreamer = uncertainty_percentiles(vector_sim().model, data)  # disagreement + error heads
    assert 0 < dreamer["p50"] <= dreamer["p99"]
    certain = wf.create_world_model(
        "dreamerv3:tiny",
        obs_shape=(OBS_DIM,),
        action_dim=ACT_DIM,
        uncertainty_heads=0,
        error_heads=0,
    )
    assert uncertainty_percentiles(certain, data) == {}


def test_cli_lists_cards_and_names_unknown_ones(capsys: pytest.CaptureFixture[str]) -> None:
    from worldflux.cli import main

    assert main(["envs", "list"]) == 0
    out = capsys.readouterr().out
    assert "WorldFlux/Dreamer-Walker-v0" in out and "WorldFlux/Ensemble-Walker-v0" in out
    assert main(["build", "dreamer-walkr"]) == 2
    assert "did you mean 'dreamer-walker'" in capsys.readouterr().err.lower()


def test_continue_threshold_and_bf16_are_used() -> None:
    sim = with_continue_bias(vector_sim(horizon=None), 0.0)  # continue probability exactly 0.5
    for threshold, ends in ((0.6, True), (0.4, False)):
        env = make_dream_env(sim, termination="threshold", continue_threshold=threshold)
        env.reset(seed=0)
        assert env.step(np.zeros(ACT_DIM))[2] is ends
    actions = np.random.default_rng(0).uniform(-1, 1, (5, ACT_DIM))

    def run(bf16: bool) -> np.ndarray:
        env = make_dream_env(vector_sim(), bf16=bf16, termination="threshold", num_envs=1)
        env.reset(seed=4)
        return np.stack([env.step(a[None])[0][0] for a in actions])

    fp32, bf16 = run(False), run(True)
    assert not np.array_equal(fp32, bf16)  # bf16 really runs the model in bfloat16
    assert np.abs(fp32 - bf16).max() < 0.5 * np.abs(fp32).max()


def test_cli_envs_list_json(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from worldflux.cli import main

    assert main(["envs", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["id"] for r in rows} >= {"WorldFlux/Dreamer-Walker-v0"}
    assert all(set(r) == {"name", "id", "model", "artifact", "built", "onnx"} for r in rows)
