"""Latent-observation mode (for families without an observation decoder) and the wrapper that
deploys a latent policy on the real environment."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import worldflux as wf
from worldflux.core.errors import ConfigError
from worldflux.dream import LatentObservation, LearnedSimulator, ResetStates, make_dream_env


def pendulum_sim(spec: str) -> LearnedSimulator:
    """An (untrained) model with Pendulum-v1's spaces and reset states from the real env."""
    torch.manual_seed(0)
    env = gym.make("Pendulum-v1")
    starts = np.stack([env.reset(seed=i)[0] for i in range(32)]).astype(np.float32)
    return LearnedSimulator(
        model=wf.create_world_model(spec, obs_shape=(3,), action_dim=1),
        observation_space=env.observation_space,
        action_space=env.action_space,
        reset_states=ResetStates(start=starts, any=starts),
        defaults={"horizon": 50},
        source_env="Pendulum-v1",
    )


def test_latent_mode_serves_the_models_features() -> None:
    sim = pendulum_sim("dreamerv3:tiny")
    model = sim.torch_model()
    width = sum(int(np.prod(model.state_spec()[k])) for k in model.latent_keys())
    env = make_dream_env(sim, observation="latent")
    assert env.observation_space == spaces.Box(-np.inf, np.inf, (width,), np.float32)
    gym_check_env(env, skip_render_check=True)
    sb3_check_env(env, warn=True)
    obs, _ = env.reset(seed=0)
    nxt, *_ = env.step(env.action_space.sample())
    assert obs.shape == nxt.shape == (width,) and obs.dtype == np.float32
    # reset from a given real observation: the latent is that observation's encoding
    real = sim.reset_states.start[3]
    obs, _ = env.reset(options={"obs": real})
    with torch.no_grad():
        state = model.encode(torch.from_numpy(real[None]))
    expected = torch.cat([state[k].flatten(1) for k in model.latent_keys()], 1)[0].numpy()
    np.testing.assert_allclose(obs, expected, atol=1e-6)
    venv = make_dream_env(sim, num_envs=4, observation="latent", backend="onnx")
    assert venv.observation_space.shape == (4, width)
    v_obs, _ = venv.reset(seed=0)
    single = make_dream_env(sim, observation="latent", backend="torch")
    np.testing.assert_allclose(v_obs[0], single.reset(seed=0)[0], atol=1e-4)
    with pytest.raises(ConfigError, match="latent-observation mode does not render"):
        make_dream_env(sim, observation="latent", render_mode="rgb_array")
    with pytest.raises(ConfigError, match="observation"):
        make_dream_env(sim, observation="pixels")


def test_ensemble_latents_are_its_observations() -> None:
    sim = pendulum_sim("ensemble:tiny")
    env = make_dream_env(sim, observation="latent")
    assert env.observation_space.shape == (3,)
    obs, _ = env.reset(seed=1)
    decoded = make_dream_env(sim)
    np.testing.assert_allclose(obs, decoded.reset(seed=1)[0], atol=1e-6)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_latent_policy_deploys_on_the_real_env(backend: str) -> None:
    sim = pendulum_sim("dreamerv3:tiny")
    dream = make_dream_env(sim, observation="latent")
    real = LatentObservation(gym.make("Pendulum-v1"), sim, backend=backend)  # type: ignore[arg-type]
    assert real.observation_space == dream.observation_space
    obs, _ = real.reset(seed=5)
    assert obs in real.observation_space
    start = gym.make("Pendulum-v1").reset(seed=5)[0]
    np.testing.assert_allclose(
        obs, dream.reset(options={"obs": start.astype(np.float32)})[0], atol=1e-4
    )
    rng = np.random.default_rng(0)
    for _ in range(20):  # a policy on latents drives the real env: latents stay finite
        obs = real.step(rng.uniform(-2, 2, (1,)).astype(np.float32))[0]
        assert obs.shape == dream.observation_space.shape and np.isfinite(obs).all()
    with pytest.raises(ConfigError, match="do not match"):
        LatentObservation(gym.make("CartPole-v1"), sim)


@pytest.mark.parametrize("spec", ["tdmpc2:tiny", "jepa:tiny"])
def test_decoder_free_family_dreams_in_latent_mode_only(spec: str) -> None:
    """TD-MPC2 and JEPA have no observation decoder: their dreams serve latents (both checkers,
    torch and ONNX alike); asking for decoded observations says why and names the latent mode."""
    sim = pendulum_sim(spec)
    model = sim.torch_model()
    latent_dim = int(model.state_spec()["z"][0])
    for backend in ("torch", "onnx"):
        env = make_dream_env(sim, observation="latent", backend=backend)
        assert env.observation_space.shape == (latent_dim,)
        gym_check_env(env, skip_render_check=True)
        sb3_check_env(env, warn=True)
    torch_env = make_dream_env(sim, observation="latent", backend="torch")
    onnx_env = make_dream_env(sim, observation="latent", backend="onnx")
    a, _ = torch_env.reset(seed=3)
    b, _ = onnx_env.reset(seed=3)
    np.testing.assert_allclose(a, b, atol=1e-5)
    for _ in range(5):  # an untrained model: its episodes may end at any step
        action = np.array([0.7], np.float32)
        a, ra, done_a, cut_a, _ = torch_env.step(action)
        b, rb, done_b, cut_b, _ = onnx_env.step(action)
        np.testing.assert_allclose(a, b, atol=1e-4)
        assert abs(ra - rb) < 1e-4 and (done_a, cut_a) == (done_b, cut_b)
        if done_a or cut_a:
            break
    with pytest.raises(ConfigError, match="no observation decoder.*observation='latent'"):
        make_dream_env(sim)
    real = LatentObservation(gym.make("Pendulum-v1"), sim, backend="onnx")  # type: ignore[arg-type]
    obs, _ = real.reset(seed=0)
    assert obs.shape == (latent_dim,)
