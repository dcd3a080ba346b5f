"""End-to-end: a model built through the registry learns a synthetic system through its
``loss(batch)`` contract and then predicts, through ``rollout``, better than naive baselines."""

from __future__ import annotations

import torch
from synthetic import ACTION_DIM, OBS_DIM, sample_batch

import worldflux as wf


def test_toy_family_learns_synthetic_dynamics_reward_and_termination() -> None:
    torch.manual_seed(0)
    model = wf.create_world_model("toy:small", obs_shape=(OBS_DIM,), action_dim=ACTION_DIM)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(600):
        batch = sample_batch(64, 4, seed=step)
        out = model.loss(batch)
        opt.zero_grad()
        out.loss.backward()
        opt.step()

    test = sample_batch(512, 4, seed=10_000)
    with torch.no_grad():
        state = model.encode(test.obs[:, 0])
        traj = model.rollout(state, test.actions.transpose(0, 1), deterministic=True)
    valid = test.mask.transpose(0, 1).bool()  # [T, B]
    true_obs = test.obs[:, 1:].transpose(0, 1)
    obs_mse = ((traj.obs - true_obs) ** 2).mean(-1)[valid].mean()
    copy_mse = ((test.obs[:, :-1].transpose(0, 1) - true_obs) ** 2).mean(-1)[valid].mean()
    true_rew = test.rewards.transpose(0, 1)
    rew_mse = ((traj.rewards - true_rew) ** 2)[valid].mean()
    mean_rew_mse = ((true_rew[valid] - true_rew[valid].mean()) ** 2).mean()

    # 4-step open-loop predictions beat copying the last observation / predicting the mean reward
    print(
        f"obs mse {obs_mse:.4f} (copy {copy_mse:.4f}); reward mse {rew_mse:.4f} (mean {mean_rew_mse:.4f})"
    )
    assert obs_mse < 0.05 * copy_mse, (obs_mse, copy_mse)
    assert rew_mse < 0.02 * mean_rew_mse, (rew_mse, mean_rew_mse)
    # terminations: probability of continuing is low where the episode ended, high elsewhere
    term = test.terminations.transpose(0, 1).bool() & valid
    cont = traj.continues
    assert term.sum() > 20
    assert cont[term].mean() < 0.5 < cont[valid & ~term].mean()
