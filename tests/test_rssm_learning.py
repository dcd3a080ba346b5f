"""DreamerV3 learns, fast enough for the default run: a nonlinear vector environment with
terminations (through the whole dataset -> ``train_run`` -> fidelity report path), and a moving
dot seen as 16x16 images.

Measured on the 2-core development machine (seed 0); the asserted margins leave room for
platform noise.
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import synthetic_envs
import torch
from synthetic import dot_position, dot_windows, moving_dot_episodes

import worldflux as wf
from worldflux.core.batch_provider import BatchRequest
from worldflux.data.collect import RandomPolicy, rollout_episodes, write_dataset
from worldflux.data.provider import MinariBatchProvider

DATASET = "test/nonlinear/random-v0"


@pytest.fixture
def nonlinear_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """20k random-action steps of ``WFTest/Nonlinear-v0`` (about 650 episodes)."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    synthetic_envs.register()
    space = gym.make("WFTest/Nonlinear-v0").action_space
    eps = rollout_episodes(
        "WFTest/Nonlinear-v0",
        RandomPolicy(space, 0),
        steps=20_000,
        n_envs=4,
        seed=0,
        progress=False,
    )
    write_dataset(DATASET, "WFTest/Nonlinear-v0", eps, algorithm_name="random", description="test")
    return DATASET


@pytest.mark.slow
def test_dreamerv3_beats_copy_and_linear_and_predicts_termination(
    nonlinear_dataset: str, tmp_path: Path
) -> None:
    from worldflux.training.run import train_run

    result = train_run(
        tmp_path / "run",
        model="dreamerv3:tiny",
        dataset=nonlinear_dataset,
        model_overrides={"obs_initial_state": True},
        trainer={
            "steps": 2000,
            "batch_size": 16,
            "seq_len": 16,
            "lr": 1e-3,
            "warmup_steps": 50,
            "eval_every": 0,
            "checkpoint_every": 0,
        },
        progress=False,
    )
    fid = result["fidelity"]["metrics"]
    model, copy, linear = fid["model"], fid["copy"], fid["linear"]
    for k in ("1", "15"):
        print(
            f"k={k}: obs nRMSE model {model[k]['obs_nrmse']:.3f} copy {copy[k]['obs_nrmse']:.3f} "
            f"linear {linear[k]['obs_nrmse']:.3f}; reward corr {model[k]['reward_pearson']:.3f}"
        )
    # measured over threads and seeds: k=1 0.06-0.10 vs copy 0.31 / linear 0.15; k=15 0.49-0.59 vs
    # copy 1.26 / linear 0.69
    best_baseline = {k: min(copy[k]["obs_nrmse"], linear[k]["obs_nrmse"]) for k in ("1", "15")}
    assert model["1"]["obs_nrmse"] < 0.7 * best_baseline["1"]
    assert model["15"]["obs_nrmse"] < 0.9 * best_baseline["15"]
    assert model["1"]["reward_pearson"] > 0.98  # measured 0.998 (linear 0.97)

    # termination: the continue probability of the step into a real terminal state, filtered on
    # the true observations, against that of ordinary steps
    trained = wf.load_pretrained(tmp_path / "run" / "model")
    data = MinariBatchProvider(nonlinear_dataset, validation_fraction=0.1)
    batch = data.get_batch(BatchRequest(512, 1, split="validation", seed=1))
    with torch.no_grad():
        state = trained.encode(batch.obs[:, 0])
        cont = trained.decode(trained.transition(state, batch.actions[:, 0], deterministic=True))
    p = cont.predictions["continue"]
    ended = batch.terminations[:, 0].bool()
    # ROC AUC: how often a terminal step gets a lower continue probability than an ordinary one
    auc = float((p[ended][:, None] < p[~ended][None, :]).float().mean())
    print(
        f"continue prob: terminal {p[ended].mean():.3f}, other {p[~ended].mean():.3f}; AUC {auc:.3f}"
    )
    # measured: terminal 0.52-0.55, other 0.996-0.999, AUC 0.99-1.00 on one machine; terminal
    # 0.71 (11 terminal steps) on another CPU, where the same seeds train a little differently
    assert ended.sum() >= 5
    assert auc > 0.9
    assert p[ended].mean() < p[~ended].mean() - 0.2

    # uncertainty: the heads disagree more where the model has never been (states 3x as far
    # out as any in the data, actions 3x the action range) than on held-out data, and so does
    # the whole uncertainty (the error heads' largest expected error on top)
    with torch.no_grad():
        u_data = cont.uncertainty
        far = trained.transition(
            trained.encode(batch.obs[:, 0] * 3.0), batch.actions[:, 0] * 3.0, deterministic=True
        )
        u_far = trained.decode(far).uncertainty
        near = trained.transition(state, batch.actions[:, 0], deterministic=True)
        heads = trained.component("decoder").heads
        disagreement = float(
            heads.variance(far["deter"]).median() / heads.variance(near["deter"]).median()
        )
    assert u_data is not None and u_far is not None
    ratio = float(u_far.median() / u_data.median())
    print(
        f"uncertainty: held-out median {u_data.median():.4f}, off-distribution median "
        f"{u_far.median():.4f} ({ratio:.1f}x; the heads' disagreement {disagreement**0.5:.1f}x); "
        f"Spearman with the k=1 error on held-out windows "
        f"{model['1']['uncertainty_spearman']:.2f}"
    )
    # measured (seed 0, one thread): held-out 0.065, off-distribution 0.122 (1.9x); the heads'
    # disagreement 2.9x; the uncertainty ranks the held-out k=1 errors at 0.71 (0 when the loss
    # trained the error heads: this system's step noise is alike in every state, and only the
    # model's own errors, fitted after training, vary)
    assert disagreement**0.5 > 2.0
    assert ratio > 1.3


@pytest.mark.slow
def test_dreamerv3_learns_a_moving_dot_from_images() -> None:
    dot, steps = 4, 5
    torch.manual_seed(0)
    episodes = moving_dot_episodes(200, 30, size=16, seed=0, dot=dot)
    held_out = moving_dot_episodes(40, 30, size=16, seed=1, dot=dot)
    model = wf.create_world_model(
        "dreamerv3:tiny", obs_shape=(3, 16, 16), action_dim=4, obs_initial_state=True
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    for _ in range(800):
        loss = model.loss(dot_windows(episodes, 16, 8, rng)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()

    test = dot_windows(held_out, 256, steps, np.random.default_rng(2))
    model.eval()
    with torch.no_grad():
        state = model.encode(test.obs[:, 0])
        recon = model.decode(state).predictions["obs"]
        traj = model.rollout(state, test.actions.transpose(0, 1), deterministic=True)
    real = test.obs[:, 1:].transpose(0, 1).float()  # [T, B, C, H, W]
    recon_mse = float(((recon - test.obs[:, 0].float()) / 255).pow(2).mean())
    copy_mse = float(((test.obs[:, 0].float() - real[0]) / 255).pow(2).mean())
    hits = [
        float((dot_position(traj.obs[k], dot) == dot_position(real[k], dot)).float().mean())
        for k in range(steps)
    ]
    reward_hits = float(
        ((traj.rewards.transpose(0, 1) > 0.5) == (test.rewards > 0.5)).float().mean()
    )
    print(
        f"recon mse {recon_mse:.4f} (copy {copy_mse:.4f}); dot found {hits}; reward {reward_hits}"
    )
    # measured: recon 0.005 (copying the previous frame: 0.030); dot position right at 1 step
    # 99%, at 5 steps 86%; reward (dot at the right wall) right 100%
    assert recon_mse < 0.01
    assert hits[0] >= 0.9 and hits[-1] >= 0.6
    assert reward_hits >= 0.97
