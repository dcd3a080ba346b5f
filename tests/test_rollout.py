"""The default rollout is transition + decode; explicit noise makes it reproducible."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ACTION_DIM, OBS_DIM
from toy_model import ToyModel

import worldflux as wf
from worldflux.core import ContractError, sample_noise_numpy, sample_noise_torch


def test_default_rollout_equals_manual_transition_decode_loop(toy: ToyModel) -> None:
    state = toy.encode(torch.randn(3, OBS_DIM))
    actions = torch.randn(5, 3, ACTION_DIM)
    noise = sample_noise_torch(toy.noise_spec(), (5, 3), generator=torch.Generator().manual_seed(1))
    traj = toy.rollout(state, actions, noise=noise)
    s = state
    for t in range(5):
        s = toy.transition(s, actions[t], noise={"z": noise["z"][t]})
        out = toy.decode(s)
        assert torch.equal(traj.states["z"][t + 1], s["z"])
        assert torch.equal(traj.obs[t], out.obs)
        assert torch.equal(traj.rewards[t], out.reward)
        assert torch.equal(traj.continues[t], out.continue_prob)
    assert torch.equal(traj.states["z"][0], state["z"])
    assert (traj.horizon, traj.batch_size) == (5, 3)


def test_same_noise_same_trajectory_different_noise_differs(toy: ToyModel) -> None:
    state = toy.encode(torch.randn(2, OBS_DIM))
    actions = torch.randn(4, 2, ACTION_DIM)
    rng = np.random.default_rng(0)
    noise_np = sample_noise_numpy(toy.noise_spec(), (4, 2), rng)
    noise = {k: torch.from_numpy(v) for k, v in noise_np.items()}
    first = toy.rollout(state, actions, noise=noise)
    torch.manual_seed(123)  # the global RNG must not matter when noise is given
    second = toy.rollout(state, actions, noise=noise)
    assert torch.equal(first.obs, second.obs)
    other = {k: v + 1.0 for k, v in noise.items()}
    assert not torch.equal(first.obs, toy.rollout(state, actions, noise=other).obs)
    det = toy.rollout(state, actions, deterministic=True)
    assert torch.equal(det.obs, toy.rollout(state, actions, deterministic=True, noise=other).obs)


def test_rollout_checks_actions_and_noise(toy: ToyModel) -> None:
    state = toy.encode(torch.randn(2, OBS_DIM))
    with pytest.raises(
        ContractError, match=r"rollout.actions: expected shape \[T=4, B=2, A=2\], got \[4, 3, 2\]"
    ):
        toy.rollout(state, torch.zeros(4, 3, ACTION_DIM))
    with pytest.raises(ContractError, match=r"rollout.noise: expected keys \['z'\], got \['eps'\]"):
        toy.rollout(state, torch.zeros(4, 2, ACTION_DIM), noise={"eps": torch.zeros(4, 2, 8)})
    with pytest.raises(
        ContractError, match=r"rollout.noise.z: expected shape \[4, 2, 8\], got \[3, 2, 8\]"
    ):
        toy.rollout(state, torch.zeros(4, 2, ACTION_DIM), noise={"z": torch.zeros(3, 2, 8)})


def test_model_checks_state_action_and_obs(toy: ToyModel) -> None:
    with pytest.raises(ContractError, match=r"ToyModel state is missing key\(s\) \['z'\]"):
        toy.transition(wf.State({"h": torch.zeros(2, 8)}), torch.zeros(2, ACTION_DIM))
    state = toy.initial_state(2)
    with pytest.raises(
        ContractError, match=r"ActionPayload.tensor: expected shape \[B=2, A=2\], got \[2, 3\]"
    ):
        toy.transition(state, torch.zeros(2, 3))
    with pytest.raises(
        ContractError, match=r"expected observation shape \[4\] after 1 leading dim\(s\), got \[5\]"
    ):
        toy.encode(torch.zeros(2, 5))
    with pytest.raises(ContractError, match="ToyModel.loss: expected a Batch, got dict"):
        toy.loss({})  # type: ignore[arg-type]


def test_update_is_the_posterior_step(toy: ToyModel) -> None:
    state = toy.initial_state(2)
    obs = torch.randn(2, OBS_DIM)
    assert torch.equal(
        toy.update(state, torch.zeros(2, ACTION_DIM), obs)["z"], toy.encode(obs)["z"]
    )
