"""The shifted-policy fidelity report against a direct computation.

The dream is a known, slightly wrong model of ``WFTest/Linear-v0``: ``x' = A x + B a + C x``
(the real system has no ``C x``), with the real reward and termination, and an "uncertainty"
equal to the size of its own one-step error. Everything the report says can then be computed
directly from the real environment and numpy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import pytest
import synthetic_envs
import torch

import worldflux as wf
from worldflux.dream import make_dream_env
from worldflux.dream.core import ResetStates
from worldflux.dream.shifted import ShiftPolicy, default_policies, shifted_policy_report
from worldflux.dream.simulator import LearnedSimulator
from worldflux.eval.fidelity import spearman

A = synthetic_envs.A
B = synthetic_envs.B
W = synthetic_envs.W
C = np.array([[0.05, 0.0], [0.0, -0.08]], dtype=np.float32)
SCALE = np.array([0.3, 0.2])


@dataclasses.dataclass
class OracleConfig(wf.WorldModelConfig):
    presets: ClassVar[dict[str, dict[str, Any]]] = {}


class BiasedLinear(wf.WorldModel):
    """``x' = (A + C) x + B a``; reward ``W . a + 0.1 x[0]``; terminates when ``|x'[0]| > 1``;
    uncertainty ``||C x / SCALE||_rms`` of the state it steps from. State ``{"x", "r", "c",
    "u"}``."""

    config: OracleConfig

    def __init__(self) -> None:
        super().__init__(OracleConfig(obs_shape=(2,), action_dim=2))
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # a device and dtype for the model

    def state_spec(self) -> dict[str, tuple[int | str, ...]]:
        return {"x": (2,), "r": (), "c": (), "u": ()}

    def noise_spec(self) -> dict[str, wf.NoiseSpec]:
        return {}

    def initial_state(self, batch_size: int, device: Any = None) -> wf.State:
        return self.encode(torch.zeros(batch_size, 2))

    def encode(self, obs: Any) -> wf.State:
        x = self.check_obs(obs).obs.float()
        zero = x[:, 0] * 0
        return wf.State({"x": x, "r": zero, "c": zero + 1, "u": zero})

    def transition(
        self,
        state: wf.State,
        action: Any,
        conditions: Any = None,
        deterministic: bool = False,
        noise: Mapping[str, torch.Tensor] | None = None,
    ) -> wf.State:
        x = state["x"]
        a = self.check_action(action, state.batch_size).float()
        t = lambda m: torch.as_tensor(m, dtype=x.dtype)  # noqa: E731
        nxt = x @ t(A + C).T + a @ t(B).T
        reward = a @ t(W) + 0.1 * x[:, 0]
        cont = (nxt[:, 0].abs() <= 1.0).float()
        u = ((x @ t(C).T / t(SCALE)) ** 2).mean(-1).sqrt()
        return wf.State({"x": nxt, "r": reward, "c": cont, "u": u})

    def update(self, state: wf.State, action: Any, obs: Any) -> wf.State:
        return self.encode(obs)

    def decode(self, state: wf.State) -> wf.ModelOutput:
        return wf.ModelOutput(
            {"obs": state["x"], "reward": state["r"], "continue": state["c"]},
            uncertainty=state["u"],
        )

    def loss(self, batch: wf.Batch) -> wf.LossOutput:
        raise NotImplementedError


def push(obs: np.ndarray) -> np.ndarray:
    """A deterministic policy that drives ``x[0]`` out of bounds (episodes terminate)."""
    return np.clip(np.stack([0.6 + obs[:, 1], -0.2 * obs[:, 0]], 1), -1, 1).astype(np.float32)


@pytest.fixture(scope="module")
def sim() -> LearnedSimulator:
    synthetic_envs.register()
    rng = np.random.default_rng(0)
    starts = rng.uniform(-0.5, 0.5, (64, 2)).astype(np.float32)
    anywhere = rng.normal(0, 1, (500, 2)).astype(np.float32) * SCALE.astype(np.float32)
    space = gym.make("WFTest/Linear-v0")
    return LearnedSimulator(
        model=BiasedLinear(),
        observation_space=space.observation_space,
        action_space=space.action_space,
        reset_states=ResetStates(start=starts, any=anywhere),
        source_env="WFTest/Linear-v0",
        defaults={"horizon": 30},
    )


def direct_real(episodes: int, k_max: int, seed: int) -> list[dict[str, Any]]:
    """One real episode at a time, seeded ``seed + i``."""
    out = []
    for i in range(episodes):
        env = gym.make("WFTest/Linear-v0")
        obs, _ = env.reset(seed=seed + i)
        observations, actions, rewards, total, done, terminated = [obs], [], [], 0.0, False, False
        while not done:
            a = push(obs[None])[0]
            obs, r, terminated, truncated, _ = env.step(a)
            observations.append(obs)
            actions.append(a)
            rewards.append(r)
            total += r
            done = terminated or truncated
        out.append(
            {
                "obs": np.array(observations),
                "actions": np.array(actions),
                "length": len(actions),
                "return": total,
                "terminated": terminated,
            }
        )
    return out


def test_report_numbers_equal_a_direct_computation(sim: LearnedSimulator, tmp_path: Path) -> None:
    episodes, horizons, seed = 6, (1, 3, 8), 3
    report = shifted_policy_report(
        sim,
        policies=[ShiftPolicy("push", push, "x[0] pushed out of bounds")],
        episodes=episodes,
        horizons=horizons,
        seed=seed,
        backend="torch",
    )
    got = report.policies[0]
    real = direct_real(episodes, max(horizons), seed)
    scale = np.maximum(sim.reset_states.any.astype(np.float64).std(0), 1e-6)

    # closed loop, real
    assert got.real.lengths.tolist() == [ep["length"] for ep in real]
    np.testing.assert_allclose(got.real.returns, [ep["return"] for ep in real], rtol=1e-5)
    assert got.real.terminated.tolist() == [ep["terminated"] for ep in real]
    assert got.real.terminated.any()

    # open loop: the biased model iterated from each real start under the real actions
    for k in horizons:
        errs = []
        for ep in real:
            if ep["length"] < k:
                continue
            x = ep["obs"][0].astype(np.float64)
            for t in range(k):
                x = (A + C) @ x + B @ ep["actions"][t]
            errs.append((x - ep["obs"][k]) / scale)
        assert got.open_loop[k]["n"] == len(errs)
        np.testing.assert_allclose(
            got.open_loop[k]["obs_nrmse"], np.sqrt(np.mean(np.square(errs))), rtol=1e-4
        )

    # one step from every real transition: the error is C x; the uncertainty ranks it exactly
    steps = [
        (ep["obs"][t], ep["obs"][t + 1], ep["actions"][t])
        for ep in real
        for t in range(min(ep["length"], max(horizons)))
    ]
    per = np.array(
        [np.sqrt(np.mean((((A + C) @ x + B @ a - y) / scale) ** 2)) for x, y, a in steps]
    )
    assert got.one_step["n"] == len(steps)
    np.testing.assert_allclose(got.one_step["obs_nrmse"], np.sqrt(np.mean(per**2)), rtol=1e-4)
    assert got.one_step["spearman"] > 0.99

    # closed loop, dream: environment i of the report's vector env = a single env seeded seed+i
    lengths, returns = [], []
    for i in range(episodes):
        env = make_dream_env(sim, backend="torch", horizon=30)
        obs, _ = env.reset(seed=seed + i)
        total, n, done = 0.0, 0, False
        while not done:
            obs, r, terminated, truncated, _ = env.step(push(obs[None])[0])
            total, n, done = total + float(r), n + 1, terminated or truncated
        lengths.append(n)
        returns.append(total)
    assert got.dream.lengths.tolist() == lengths
    np.testing.assert_allclose(got.dream.returns, returns, rtol=1e-5)

    paths = report.save(tmp_path)
    assert [p.name for p in paths] == ["shifted.json", "shifted.md", "shifted.png"]
    text = (tmp_path / "shifted.md").read_text()
    assert "| push |" in text and "uncertainty Spearman" in text


def test_default_policies_without_a_behaviour_policy(sim: LearnedSimulator) -> None:
    policies, notes = default_policies(sim, seed=0)
    assert [p.name for p in policies] == ["random"]
    assert "No behaviour policy" in notes[0]
    report = shifted_policy_report(sim, episodes=4, horizons=(1, 2), backend="torch")
    assert [p.name for p in report.policies] == ["random"]
    assert report.settings["horizon"] == 30  # the real environment's time limit


def test_spearman_matches_ranks() -> None:
    a = np.array([0.1, 0.4, 0.2, 0.9, 0.5])
    assert spearman(a, a**3) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert np.isnan(spearman(a, np.ones(5)))
    # ties get average ranks
    assert spearman(
        np.array([1.0, 1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0, 4.0])
    ) == pytest.approx(np.corrcoef([0.5, 0.5, 2, 3], [0, 1, 2, 3])[0, 1])
