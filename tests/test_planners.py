"""Planners over any family (CEM, MPPI) and the MPC policy: optimality on linear-quadratic
control against the Riccati solution, batching (one model call per horizon step), reproducibility,
warm starts, the score's terms, settings validation, and closed-loop control of the real
Pendulum-v1 scored by Stable-Baselines3's ``evaluate_policy``."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

import worldflux as wf
from worldflux.core import PLANNER_HORIZON_KEY, Planner
from worldflux.core.errors import ConfigError, ContractError
from worldflux.planners import (
    ACTION_STD_KEY,
    PLAN_KEY,
    VALUE_KEY,
    CEMPlanner,
    MPCPolicy,
    MPCState,
    MPPIPlanner,
    ReturnScorer,
    SamplingPlanner,
)

PLANNERS: dict[str, type[SamplingPlanner]] = {"cem": CEMPlanner, "mppi": MPPIPlanner}

#: ``step(x [B, D], u [B, A]) -> (x' [B, D], reward [B], {"continue" / "uncertainty": [B]})``
Step = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, dict[str, Any]]]


class FnModel(wf.WorldModel):
    """A deterministic world model from a step function: the state carries the observation
    ``x`` and what was predicted for the transition into it (the reward of the action taken, and
    where ``step`` gives them a continue probability and an uncertainty), so ``decode`` after
    ``transition`` gives the reward for the action taken, as every family does."""

    def __init__(self, obs_dim: int, action_dim: int, step: Step, extras: tuple[str, ...] = ()):
        super().__init__(wf.WorldModelConfig(obs_shape=(obs_dim,), action_dim=action_dim))
        self.step = step
        self.extras = extras

    def state_spec(self) -> dict[str, tuple[int | str, ...]]:
        return {"x": (self.config.obs_shape[0],), "reward": (), **{k: () for k in self.extras}}

    def initial_state(self, batch_size: int, device: Any = None) -> wf.State:
        return self._state(torch.zeros(batch_size, self.config.obs_shape[0]))

    def _state(self, x: torch.Tensor, reward: torch.Tensor | None = None, **more: Any) -> wf.State:
        zeros = x.new_zeros(x.shape[0])
        tensors = {"x": x, "reward": zeros if reward is None else reward}
        tensors.update({k: more.get(k, zeros) for k in self.extras})
        return wf.State(tensors)

    def encode(self, obs: Any) -> wf.State:
        return self._state(self.check_obs(obs).obs.float())

    def transition(
        self,
        state: wf.State,
        action: Any,
        conditions: Any = None,
        deterministic: bool = False,
        noise: Mapping[str, torch.Tensor] | None = None,
    ) -> wf.State:
        self.check_state(state)
        nxt, reward, more = self.step(state["x"], self.check_action(action, state.batch_size))
        return self._state(nxt, reward, **more)

    def update(self, state: wf.State, action: Any, obs: Any) -> wf.State:
        reward = self.transition(state, action)["reward"]
        return self._state(self.check_obs(obs).obs.float(), reward)

    def decode(self, state: wf.State) -> wf.ModelOutput:
        preds = {"obs": state["x"], "reward": state["reward"]}
        if "continue" in state:
            preds["continue"] = state["continue"]
        uncertainty = state.tensors.get("uncertainty")
        return wf.ModelOutput(preds, uncertainty=uncertainty)

    def loss(self, batch: wf.Batch) -> wf.LossOutput:
        raise NotImplementedError("a fixed model")


# -- linear-quadratic control ------------------------------------------------------------------------
#: x' = A x + B u; reward of a step = -(x'^T Q x' + u^T R u) (the state reached and the action
#: taken), so a plan's score over H steps is minus the finite-horizon LQR cost with stage cost Q
#: on x_1..x_{H-1}, terminal cost Q on x_H, and R on u_0..u_{H-1}.
LQ_A = np.array([[0.9, 0.2], [-0.2, 0.9]])
LQ_B = np.eye(2) * 0.5
LQ_Q = np.eye(2)
LQ_R = np.eye(2) * 0.5
LQ_X0 = np.array([[2.0, 0.0], [-1.0, 1.0], [0.5, -2.0]])  # three envs
LQ_BOUND = 3.0  # |u| <= 3: the unconstrained optimum lies well inside


def lq_model() -> FnModel:
    a, b = torch.tensor(LQ_A, dtype=torch.float32), torch.tensor(LQ_B, dtype=torch.float32)
    q, r = torch.tensor(LQ_Q, dtype=torch.float32), torch.tensor(LQ_R, dtype=torch.float32)

    def step(x: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        nxt = x @ a.T + u @ b.T
        return nxt, -((nxt @ q) * nxt).sum(-1) - ((u @ r) * u).sum(-1), {}

    return FnModel(2, 2, step)


def lqr_gains(horizon: int) -> list[np.ndarray]:
    """Feedback gains ``K_t`` (``u_t = -K_t x_t``) minimising the H-step cost above (backward
    Riccati recursion)."""
    p = LQ_Q.copy()  # terminal cost on x_H
    gains = []
    for t in reversed(range(horizon)):
        k = np.linalg.solve(LQ_R + LQ_B.T @ p @ LQ_B, LQ_B.T @ p @ LQ_A)
        stage = LQ_Q if t > 0 else np.zeros_like(LQ_Q)  # x_0 is given, not chosen
        p = stage + LQ_A.T @ p @ (LQ_A - LQ_B @ k)
        gains.append(k)
    return gains[::-1]


def lq_cost(x: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """True cost ``[E]`` of ``actions [T, E, A]`` from ``x [E, D]``."""
    total = np.zeros(x.shape[0])
    for u in actions:
        x = x @ LQ_A.T + u @ LQ_B.T
        total += ((x @ LQ_Q) * x).sum(-1) + ((u @ LQ_R) * u).sum(-1)
    return total


def lq_planner(kind: str, **overrides: Any) -> SamplingPlanner:
    """Settings that solve the 5-step LQ problem: 512 samples, 10 rounds, from a spread of 0.9."""
    settings: dict[str, Any] = dict(
        horizon=5,
        num_samples=512,
        iterations=10,
        low=-LQ_BOUND,
        high=LQ_BOUND,
        init_std=0.3,
        min_std=0.0,
    )
    settings.update({"num_elites": 32} if kind == "cem" else {"num_elites": 64, "temperature": 1.0})
    settings.update(overrides)
    return PLANNERS[kind](lq_model(), **settings)


def lq_state(x: np.ndarray = LQ_X0) -> wf.State:
    return wf.State({"x": torch.tensor(x, dtype=torch.float32), "reward": torch.zeros(x.shape[0])})


def scorer(model: wf.WorldModel, horizon: int, **settings: Any) -> ReturnScorer:
    defaults: dict[str, Any] = dict(
        discount=1.0, uncertainty_penalty=0.0, value_fn=None, sample_transitions=False
    )
    defaults.update(settings)
    return ReturnScorer(model, horizon=horizon, generator=torch.Generator(), **defaults)


@pytest.mark.parametrize("discount", [1.0, 0.9])
def test_scorer_return_is_minus_the_true_discounted_lq_cost(discount: float) -> None:
    """The score of fixed action sequences is minus their LQ cost, step t discounted by
    discount**t (float32 against float64: rtol 1e-5)."""
    actions = np.random.default_rng(0).uniform(-1, 1, (5, 3, 2))
    acts = torch.tensor(actions, dtype=torch.float32)
    returns = scorer(lq_model(), 5, discount=discount).score(lq_state(), lambda t, s: acts[t])
    expected, x = np.zeros(3), LQ_X0
    for t, u in enumerate(actions):
        expected -= discount**t * lq_cost(x, u[None])
        x = x @ LQ_A.T + u @ LQ_B.T
    np.testing.assert_allclose(returns.numpy(), expected, rtol=1e-5)


def test_scorer_counts_the_terminating_steps_reward_and_nothing_after() -> None:
    """Reward 1 per step and value_fn 10, discount 0.5, the episode ends on entering x' > 0:
    staying below 0 scores 1 + 0.5 + 0.25 + 0.125 x 10; ending at step 3 scores 1 + 0.5 + 0.25
    (the last step's reward counts, the value does not); ending at step 1 scores 1."""
    model = line_model(reward=torch.ones_like, continue_prob=lambda x: (x <= 0).float())
    acts = torch.tensor([[-0.5, -0.5, 2.0], [-0.5, -0.5, -0.5], [1.0, -1.0, -1.0]]).T[..., None]

    def value_fn(state: wf.State) -> torch.Tensor:
        return torch.full((state.batch_size,), 10.0)

    returns = scorer(model, 3, discount=0.5, value_fn=value_fn).score(
        line_state(model, batch=3), lambda t, s: acts[t]
    )
    torch.testing.assert_close(returns, torch.tensor([1.75, 1.75 + 1.25, 1.0]))


@pytest.mark.parametrize("kind", PLANNERS)
def test_first_action_within_0_05_of_the_finite_horizon_lqr_optimum(kind: str) -> None:
    """Every env's first action is within 0.05 (max abs, actions in [-3, 3]; the optimum's
    entries are up to 1.8) of the 5-step LQR optimum -K_0 x_0, and the predicted value within
    1% of minus the optimum's cost."""
    out = lq_planner(kind).plan(lq_state())
    optimum = -(LQ_X0 @ lqr_gains(5)[0].T)
    assert np.abs(out.action.numpy() - optimum).max() < 0.05
    x, actions = LQ_X0, []
    for k in lqr_gains(5):
        actions.append(-(x @ k.T))
        x = x @ LQ_A.T + actions[-1] @ LQ_B.T
    best = lq_cost(LQ_X0, np.stack(actions))
    np.testing.assert_allclose(out.extras[VALUE_KEY].numpy(), -best, rtol=0.01)


@pytest.mark.parametrize("kind", PLANNERS)
def test_closed_loop_cost_over_30_steps_within_1_1x_of_lqr(kind: str) -> None:
    """Receding-horizon control over 30 steps (4 rounds per step, warm-started) costs at most
    1.1x receding-horizon LQR with the same 5-step horizon, in each of the three envs."""
    planner = lq_planner(kind, iterations=4)
    model = planner.model
    gain = lqr_gains(5)[0]
    x_plan, x_lqr = LQ_X0.copy(), LQ_X0.copy()
    plan_actions, lqr_actions = [], []
    for _ in range(30):
        u = planner.plan(model.encode(torch.tensor(x_plan, dtype=torch.float32))).action
        plan_actions.append(u.double().numpy())
        x_plan = x_plan @ LQ_A.T + plan_actions[-1] @ LQ_B.T
        lqr_actions.append(-(x_lqr @ gain.T))
        x_lqr = x_lqr @ LQ_A.T + lqr_actions[-1] @ LQ_B.T
    ratio = lq_cost(LQ_X0, np.stack(plan_actions)) / lq_cost(LQ_X0, np.stack(lqr_actions))
    assert (ratio <= 1.1).all(), ratio


# -- batching ------------------------------------------------------------------------------------------
FAMILIES = [
    "toy:tiny",
    "ensemble:tiny",
    "dreamerv3:tiny",
    "planet:tiny",
    "tdmpc2:tiny",
    "jepa:tiny",
]


@pytest.mark.parametrize("spec", FAMILIES)
@pytest.mark.parametrize("kind", PLANNERS)
def test_one_model_call_per_horizon_step_for_all_envs_on_every_family(
    kind: str, spec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """transition and decode are each called horizon x iterations times, every call on all
    B x num_samples rows (no loop over envs); deterministic transitions by default; actions lie in
    per-dimension bounds; the output follows the PlannerOutput contract."""
    torch.manual_seed(0)
    model = wf.create_world_model(spec, obs_shape=(4,), action_dim=2).eval()
    calls: dict[str, list[Any]] = {"transition": [], "decode": []}
    transition, decode = model.transition, model.decode

    def counting_transition(state: wf.State, action: torch.Tensor, *args: Any, **kw: Any) -> Any:
        calls["transition"].append((state.batch_size, kw.get("deterministic"), kw.get("noise")))
        return transition(state, action, *args, **kw)

    def counting_decode(state: wf.State) -> wf.ModelOutput:
        calls["decode"].append(state.batch_size)
        return decode(state)

    monkeypatch.setattr(model, "transition", counting_transition)
    monkeypatch.setattr(model, "decode", counting_decode)
    low, high = torch.tensor([-1.0, 0.0]), torch.tensor([1.0, 0.5])
    planner = PLANNERS[kind](
        model, horizon=3, num_samples=16, num_elites=4, iterations=2, low=low, high=high
    )
    assert isinstance(planner, Planner)
    batch = 5
    out = planner.plan(model.encode(torch.randn(batch, 4)))
    assert len(calls["transition"]) == len(calls["decode"]) == 3 * 2
    assert set(calls["transition"]) == {(batch * 16, True, None)}
    assert set(calls["decode"]) == {batch * 16}
    assert out.action.shape == (batch, 2) and out.horizon == out.extras[PLANNER_HORIZON_KEY] == 3
    assert ((out.action >= low) & (out.action <= high)).all()
    assert out.extras[VALUE_KEY].shape == (batch,)
    assert out.extras[PLAN_KEY].shape == (3, batch, 2)
    assert out.extras[ACTION_STD_KEY].shape == (batch, 2)
    torch.testing.assert_close(out.extras[PLAN_KEY][0], out.action)


@pytest.mark.parametrize("kind", PLANNERS)
def test_sampled_transitions_draw_the_model_noise_from_the_planners_generator(kind: str) -> None:
    """sample_transitions=True passes deterministic=False and noise of the model's noise_spec
    ([B x N, ...]) drawn from the seeded generator: reproducible, and unlike deterministic plans."""
    torch.manual_seed(0)
    model = wf.create_world_model("toy:tiny", obs_shape=(4,), action_dim=2).eval()
    seen: list[tuple[bool, dict[str, tuple[int, ...]]]] = []
    transition = model.transition

    def recording(state: wf.State, action: torch.Tensor, *args: Any, **kw: Any) -> Any:
        seen.append((kw["deterministic"], {k: tuple(v.shape) for k, v in kw["noise"].items()}))
        return transition(state, action, *args, **kw)

    model.transition = recording  # type: ignore[method-assign]
    obs = torch.randn(3, 4, generator=torch.Generator().manual_seed(1))

    def plan(sample: bool) -> torch.Tensor:
        planner = PLANNERS[kind](
            model, horizon=2, num_samples=8, num_elites=2, iterations=1, sample_transitions=sample
        )
        return planner.plan(model.encode(obs)).action

    first, again = plan(True), plan(True)
    assert seen[0] == (False, {"z": (3 * 8, 8)})
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    model.transition = transition  # type: ignore[method-assign]
    assert not torch.equal(first, plan(False))


# -- randomness and warm starts ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", PLANNERS)
def test_seeded_planners_reproduce_exactly_and_seeds_differ(kind: str) -> None:
    """Same seed: bit-identical actions over three consecutive (warm-started) calls; another
    seed: different actions; reset() re-seeds, so the first call's action comes back."""

    def run(planner: SamplingPlanner) -> list[torch.Tensor]:
        return [planner.plan(lq_state()).action for _ in range(3)]

    a = lq_planner(kind, iterations=2, seed=7)
    first = run(a)
    second = run(lq_planner(kind, iterations=2, seed=7))
    for x, y in zip(first, second, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    other = run(lq_planner(kind, iterations=2, seed=8))
    assert all(not torch.equal(x, y) for x, y in zip(first, other, strict=True))
    a.reset()
    assert a.warm_start is None
    torch.testing.assert_close(a.plan(lq_state()).action, first[0], rtol=0, atol=0)


@pytest.mark.parametrize("kind", PLANNERS)
def test_warm_start_is_the_previous_plan_shifted_by_one_step(kind: str) -> None:
    planner = lq_planner(kind, iterations=2, low=[-3.0, -1.0], high=[3.0, 2.0])
    assert planner.warm_start is None
    out = planner.plan(lq_state())
    warm = planner.warm_start
    assert warm is not None and warm.shape == (5, 3, 2)
    torch.testing.assert_close(warm[:-1], out.extras[PLAN_KEY][1:])
    middle = torch.tensor([0.0, 0.5])  # the middle of the bounds
    torch.testing.assert_close(warm[-1], middle.expand(3, 2))


@pytest.mark.parametrize("kind", PLANNERS)
def test_warm_start_lowers_the_closed_loop_cost_of_a_one_round_planner(kind: str) -> None:
    """With one round of 64 samples of a small spread (0.05 x 3) per step, planning from the
    shifted previous plan costs at least 15% less over 20 steps than starting every step afresh
    (reset of every env): the plan keeps improving across steps (about 25% less)."""

    def closed_loop(warm: bool) -> float:
        planner = lq_planner(kind, iterations=1, num_samples=64, num_elites=8, init_std=0.05)
        x, actions = LQ_X0.copy(), []
        for _ in range(20):
            if not warm:
                planner.reset(np.ones(3, bool))
            u = planner.plan(lq_state(x)).action.double().numpy()
            actions.append(u)
            x = x @ LQ_A.T + u @ LQ_B.T
        return float(lq_cost(LQ_X0, np.stack(actions)).sum())

    assert closed_loop(True) < 0.85 * closed_loop(False)


@pytest.mark.parametrize("kind", PLANNERS)
def test_reset_mask_clears_only_the_masked_envs(kind: str) -> None:
    planner = lq_planner(kind, iterations=1)
    planner.plan(lq_state())
    before = planner.warm_start
    assert before is not None
    planner.reset(np.array([False, True, False]))
    after = planner.warm_start
    assert after is not None
    torch.testing.assert_close(after[:, [0, 2]], before[:, [0, 2]], rtol=0, atol=0)
    assert (after[:, 1] == 0).all()  # the middle of [-3, 3]
    planner.reset(torch.tensor([True, False, False]))
    after = planner.warm_start
    assert after is not None and (after[:, :2] == 0).all()
    with pytest.raises(ContractError, match=r"bool mask \[B\], got torch.int64"):
        planner.reset(np.array([1, 0, 0]))
    with pytest.raises(ContractError, match="B=3 envs planned for, got 2"):
        planner.reset([True, False])
    with pytest.raises(ContractError, match="warm starts are for B=3 envs, got a state of B=1"):
        planner.plan(lq_state(LQ_X0[:1]))
    planner.reset()
    assert planner.plan(lq_state(LQ_X0[:1])).action.shape == (1, 2)


# -- the score's terms -------------------------------------------------------------------------------
def line_model(
    reward: Callable[[torch.Tensor], torch.Tensor],
    continue_prob: Callable[[torch.Tensor], torch.Tensor] | None = None,
    uncertainty: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> FnModel:
    """x' = x + u on a line; the step's reward, continue probability and uncertainty are
    functions of x'."""
    extras = tuple(
        name
        for name, fn in (("continue", continue_prob), ("uncertainty", uncertainty))
        if fn is not None
    )

    def step(x: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        nxt = x + u
        more = {}
        if continue_prob is not None:
            more["continue"] = continue_prob(nxt[:, 0])
        if uncertainty is not None:
            more["uncertainty"] = uncertainty(nxt[:, 0])
        return nxt, reward(nxt[:, 0]), more

    return FnModel(1, 1, step, extras)


def line_state(model: FnModel, batch: int = 2) -> wf.State:
    return model.encode(torch.zeros(batch, 1))


@pytest.mark.parametrize("kind", PLANNERS)
def test_uncertainty_penalty_steers_away_from_the_uncertain_side(kind: str) -> None:
    """Reward |x'| + 0.1 x' favours x' > 0, where the uncertainty 2 relu(x') lies: the first
    action is above 0.9 without a penalty and below -0.9 with uncertainty_penalty=1 (bounds +-1)."""
    model = line_model(reward=lambda x: x.abs() + 0.1 * x, uncertainty=lambda x: 2 * torch.relu(x))
    settings = dict(horizon=2, num_samples=128, num_elites=16, iterations=4, min_std=0.0)
    if kind == "mppi":
        settings["temperature"] = 0.1
    plain = PLANNERS[kind](model, **settings).plan(line_state(model)).action
    wary = PLANNERS[kind](model, uncertainty_penalty=1.0, **settings).plan(line_state(model))
    assert (plain > 0.9).all(), plain
    assert (wary.action < -0.9).all(), wary.action


@pytest.mark.parametrize("kind", PLANNERS)
def test_uncertainty_penalty_without_model_uncertainty_is_a_config_error(kind: str) -> None:
    planner = PLANNERS[kind](
        lq_model(), horizon=2, num_samples=8, num_elites=2, iterations=1, uncertainty_penalty=0.5
    )
    with pytest.raises(ConfigError, match=r"uncertainty_penalty=0.5 needs .* gave None"):
        planner.plan(lq_state())


@pytest.mark.parametrize("kind", PLANNERS)
def test_continue_probability_weights_later_rewards(kind: str) -> None:
    """Reward 1 per step, but the episode ends on entering x' > 0: the plan stays at x' <= 0
    all along and its predicted value is the full 3 steps' reward (within 0.01)."""
    model = line_model(
        reward=lambda x: torch.ones_like(x), continue_prob=lambda x: (x <= 0).float()
    )
    planner = PLANNERS[kind](
        model, horizon=3, num_samples=64, num_elites=8, iterations=3, min_std=0.0
    )
    out = planner.plan(line_state(model))
    assert (out.extras[PLAN_KEY].cumsum(0) <= 0).all(), out.extras[PLAN_KEY]  # the path x'
    torch.testing.assert_close(out.extras[VALUE_KEY], torch.full((2,), 3.0), atol=0.01, rtol=0)


@pytest.mark.parametrize("kind", PLANNERS)
def test_terminal_value_is_bootstrapped_with_the_discount(kind: str) -> None:
    """Zero reward and value_fn(x) = x after H=2 steps with discount 0.5: the plan drives x' to
    the upper bound (first action > 0.9) and its predicted value is 0.5**2 x_H (within 0.01;
    x_H = 2 at the bounds +-1)."""
    model = line_model(reward=torch.zeros_like)
    seen: list[int] = []

    def value_fn(state: wf.State) -> torch.Tensor:
        seen.append(state.batch_size)
        return state["x"][:, 0]

    planner = PLANNERS[kind](
        model,
        horizon=2,
        num_samples=64,
        num_elites=8,
        iterations=4,
        discount=0.5,
        value_fn=value_fn,
        min_std=0.0,
    )
    out = planner.plan(line_state(model))
    assert seen == [2 * 64] * 4
    assert (out.action > 0.9).all()
    torch.testing.assert_close(out.extras[VALUE_KEY], torch.full((2,), 0.5), atol=0.01, rtol=0)


@pytest.mark.parametrize("kind", PLANNERS)
def test_policy_prior_candidates_are_mixed_in(kind: str) -> None:
    """One round, 4 Gaussian samples and 1 elite, reward -(u - 0.7)^2: the prior's sequence (always
    0.7, one per env) is the best candidate, so the action is exactly 0.7; the prior is called
    once per horizon step, on the imagined states of the B x P prior rows."""
    target = 0.7
    model = FnModel(1, 1, lambda x, u: (x + u, -((u[:, 0] - target) ** 2), {}))
    calls: list[int] = []

    def prior_fn(state: wf.State) -> torch.Tensor:
        calls.append(state.batch_size)
        return torch.full((state.batch_size, 1), target)

    settings = dict(horizon=3, num_samples=4, num_elites=1, iterations=2)
    out = PLANNERS[kind](model, prior_fn=prior_fn, num_prior_samples=1, **settings).plan(
        line_state(model, batch=3)
    )
    torch.testing.assert_close(out.action, torch.full((3, 1), target), rtol=0, atol=0)
    assert calls == [3 * 1] * 3  # first round only; later rounds reuse the sequences
    plain = PLANNERS[kind](model, **settings).plan(line_state(model, batch=3))
    assert not torch.equal(plain.action, out.action)

    def bad_prior(state: wf.State) -> torch.Tensor:
        return torch.zeros(state.batch_size, 2)

    with pytest.raises(ContractError, match=r"prior_fn\(state\): expected shape"):
        PLANNERS[kind](model, prior_fn=bad_prior, num_prior_samples=1, **settings).plan(
            line_state(model)
        )


@pytest.mark.parametrize("kind", PLANNERS)
def test_centre_on_prior_searches_around_the_prior(kind: str) -> None:
    """Reward -(u - 0.7)^2 and a prior that says -0.5: centred on the prior with a small std,
    every Gaussian sample stays near -0.5 (the search is local to the prior), while the plain
    search from the middle finds 0.7. The prior is rolled out once first (B x P rows), and the
    same sequences join the first round."""
    model = FnModel(1, 1, lambda x, u: (x + u, -((u[:, 0] - 0.7) ** 2), {}))
    calls: list[int] = []

    def prior_fn(state: wf.State) -> torch.Tensor:
        calls.append(state.batch_size)
        return torch.full((state.batch_size, 1), -0.5)

    settings = dict(horizon=2, num_samples=32, num_elites=4, iterations=2, init_std=0.05)
    settings.update(min_std=0.01)
    centred = PLANNERS[kind](
        model, prior_fn=prior_fn, num_prior_samples=2, centre_on_prior=True, **settings
    ).plan(line_state(model, batch=3))
    assert calls == [3 * 2] * 2  # the prior's own rollout; the round reuses its sequences
    assert (centred.action - (-0.5)).abs().max() < 0.25 and (centred.action > -0.5).all()
    wide = PLANNERS[kind](model, **{**settings, "init_std": 1.0}).plan(line_state(model, batch=3))
    assert (wide.action - 0.7).abs().max() < 0.2


def test_mppi_temperature_moves_from_the_best_candidate_to_the_plain_average() -> None:
    """One round of the same samples (same seed): a tiny temperature gives the best elite (CEM
    with one elite), a huge one the equal average of the elites (CEM with as many)."""

    def first(planner: SamplingPlanner) -> torch.Tensor:
        return planner.plan(lq_state()).action

    def mppi(temperature: float) -> torch.Tensor:
        return first(lq_planner("mppi", iterations=1, num_elites=16, temperature=temperature))

    torch.testing.assert_close(mppi(1e-6), first(lq_planner("cem", iterations=1, num_elites=1)))
    torch.testing.assert_close(mppi(1e6), first(lq_planner("cem", iterations=1, num_elites=16)))


@pytest.mark.parametrize("kind", PLANNERS)
def test_init_std_and_min_std_set_the_sampling_spread(kind: str) -> None:
    """init_std: one round with every candidate an elite refits the Gaussian to 4096 samples of
    std init_std x half range (0.1 x 3), within 5%. min_std: after 10 rounds on the LQ problem the
    spread sits at its floor min_std x half range (0.1 x 3) instead of collapsing below it."""
    extra = {"temperature": 1e9} if kind == "mppi" else {}
    wide = lq_planner(kind, iterations=1, num_samples=4096, num_elites=4096, init_std=0.1, **extra)
    std = wide.plan(lq_state()).extras[ACTION_STD_KEY]
    torch.testing.assert_close(std, torch.full_like(std, 0.3), rtol=0.05, atol=0)
    floored = lq_planner(kind, min_std=0.1).plan(lq_state()).extras[ACTION_STD_KEY]
    torch.testing.assert_close(floored, torch.full_like(floored, 0.3))
    free = lq_planner(kind).plan(lq_state()).extras[ACTION_STD_KEY]
    assert (free < 0.3).all()


# -- settings validation -----------------------------------------------------------------------------
def _raise_prior(state: wf.State) -> torch.Tensor:
    raise AssertionError("not called")


BAD_SETTINGS: list[tuple[dict[str, Any], str]] = [
    ({"horizon": 0}, r"horizon: expected an int >= 1, got 0"),
    ({"horizon": 2.5}, r"horizon: expected an int >= 1, got 2.5"),
    ({"horizon": True}, r"horizon: expected an int >= 1, got True"),
    ({"num_samples": 0}, r"num_samples: expected an int >= 1, got 0"),
    ({"iterations": 0}, r"iterations: expected an int >= 1, got 0"),
    ({"num_elites": 0}, r"num_elites: expected an int >= 1, got 0"),
    (
        {"num_elites": 9},
        r"num_elites: expected at most num_samples \+ num_prior_samples = 8, got 9",
    ),
    ({"init_std": 0.0}, r"init_std: expected a finite number in \(0.0, inf\], got 0.0"),
    ({"init_std": math.nan}, r"init_std: expected a finite number .* got nan"),
    ({"min_std": -0.1}, r"min_std: expected a finite number in \[0.0, 1.0\], got -0.1"),
    ({"min_std": 2.0}, r"min_std: expected a finite number in \[0.0, 1.0\], got 2.0"),
    ({"discount": 0.0}, r"discount: expected a finite number in \(0.0, 1.0\], got 0.0"),
    ({"discount": 1.5}, r"discount: expected a finite number in \(0.0, 1.0\], got 1.5"),
    ({"uncertainty_penalty": -1.0}, r"uncertainty_penalty: expected a finite number in \[0.0"),
    ({"uncertainty_penalty": math.inf}, r"uncertainty_penalty: expected a finite number"),
    ({"low": 1.0, "high": 1.0}, r"expected low < high in every action dimension"),
    ({"low": [-1.0, -1.0, -1.0]}, r"low: expected a float or shape \[A=2\], got shape \[3\]"),
    ({"high": [1.0, math.nan]}, r"high: expected finite values"),
    ({"low": "wide"}, r"low: expected a float or 2 floats, got 'wide'"),
    ({"value_fn": 3}, r"value_fn: expected a callable or None, got int"),
    ({"prior_fn": _raise_prior}, r"prior_fn and num_prior_samples go together"),
    ({"num_prior_samples": 2}, r"prior_fn and num_prior_samples go together"),
    ({"num_prior_samples": -1}, r"num_prior_samples: expected an int >= 0, got -1"),
    ({"sample_transitions": 1}, r"sample_transitions: expected a bool, got 1"),
    ({"centre_on_prior": True}, r"centre_on_prior: expected a prior_fn"),
    ({"seed": -1}, r"seed: expected an int >= 0, got -1"),
]


@pytest.mark.parametrize(("bad", "message"), BAD_SETTINGS)
@pytest.mark.parametrize("kind", PLANNERS)
def test_settings_are_validated(kind: str, bad: dict[str, Any], message: str) -> None:
    settings: dict[str, Any] = dict(horizon=2, num_samples=8, num_elites=2, iterations=1)
    settings.update(bad)
    with pytest.raises(ConfigError, match=message):
        PLANNERS[kind](lq_model(), **settings)


@pytest.mark.parametrize("temperature", [0.0, -1.0, math.inf, "hot"])
def test_mppi_temperature_is_validated(temperature: Any) -> None:
    with pytest.raises(ConfigError, match=r"MPPIPlanner.temperature: expected a finite number"):
        MPPIPlanner(lq_model(), temperature=temperature)


def test_planners_need_a_world_model_and_a_state() -> None:
    with pytest.raises(ConfigError, match="CEMPlanner.model: expected a WorldModel or a Stepper"):
        CEMPlanner("ensemble")  # type: ignore[arg-type]
    with pytest.raises(ContractError, match="MPPIPlanner.plan: expected a State, got Tensor"):
        MPPIPlanner(lq_model()).plan(torch.zeros(2, 2))  # type: ignore[arg-type]


def test_non_finite_predicted_returns_are_a_contract_error() -> None:
    model = line_model(reward=lambda x: torch.where(x > 0, torch.nan, 0.0))
    with pytest.raises(ContractError, match="expected finite predicted returns, got"):
        CEMPlanner(model, num_samples=8, num_elites=2).plan(line_state(model))


# -- the MPC policy ------------------------------------------------------------------------------------
def pendulum_model() -> FnModel:
    """Pendulum-v1's true dynamics and reward (gymnasium's step), on its observations
    [cos th, sin th, th_dot]."""

    def step(o: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        th, thdot = torch.atan2(o[:, 1], o[:, 0]), o[:, 2]
        torque = u[:, 0].clamp(-2.0, 2.0)
        cost = th**2 + 0.1 * thdot**2 + 0.001 * torque**2  # th in [-pi, pi] already
        thdot = (thdot + (3 * 10.0 / 2 * torch.sin(th) + 3.0 * torque) * 0.05).clamp(-8.0, 8.0)
        th = th + thdot * 0.05
        return torch.stack([th.cos(), th.sin(), thdot], 1), -cost, {}

    return FnModel(3, 1, step)


def test_mpc_policy_beats_a_random_policy_on_the_real_pendulum_by_600() -> None:
    """SB3's evaluate_policy on Pendulum-v1 (2 envs, 4 episodes of 200 steps): CEM and MPPI MPC
    (horizon 15, 128 samples, 3 warm-started rounds) on the true dynamics score more than 600
    above uniform random actions (random: about -1,200; the MPC policies: about -160); a second
    evaluation from the same seeds reproduces the returns exactly."""
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import DummyVecEnv

    venv = DummyVecEnv([lambda: gym.make("Pendulum-v1")] * 2)
    space = venv.action_space

    class Random:
        rng = np.random.default_rng(0)

        def predict(self, obs: np.ndarray, state: Any = None, **kw: Any) -> tuple[np.ndarray, None]:
            return self.rng.uniform(-2, 2, (obs.shape[0], 1)).astype(np.float32), None

    def score(policy: Any) -> list[float]:
        venv.seed(0)
        returns, _ = evaluate_policy(
            policy, venv, n_eval_episodes=4, return_episode_rewards=True, warn=False
        )
        return list(returns)

    random_mean = float(np.mean(score(Random())))
    model = pendulum_model()
    for cls, extra in ((CEMPlanner, {}), (MPPIPlanner, {"temperature": 1.0})):
        planner = cls(
            model,
            horizon=15,
            num_samples=128,
            num_elites=32,
            iterations=3,
            low=-2.0,
            high=2.0,
            **extra,
        )
        policy = MPCPolicy(model, planner, space)
        returns = score(policy)
        assert np.mean(returns) > random_mean + 600, (cls.__name__, returns, random_mean)
        if cls is CEMPlanner:
            assert score(policy) == returns


class RecordingLQModel(FnModel):
    def __init__(self) -> None:
        base = lq_model()
        super().__init__(2, 2, base.step)
        self.log: list[tuple[str, int]] = []

    def encode(self, obs: Any) -> wf.State:
        self.log.append(("encode", int(self.check_obs(obs).obs.shape[0])))
        return super().encode(obs)

    def update(self, state: wf.State, action: Any, obs: Any) -> wf.State:
        self.log.append(("update", state.batch_size))
        self.last_update_action = action.clone()
        return super().update(state, action, obs)


def lq_policy(model: FnModel, **policy: Any) -> MPCPolicy:
    planner = CEMPlanner(
        model, horizon=5, num_samples=64, num_elites=8, iterations=2, low=-LQ_BOUND, high=LQ_BOUND
    )
    space = gym.spaces.Box(-LQ_BOUND, LQ_BOUND, (2,), np.float32)
    return MPCPolicy(model, planner, space, **policy)


def test_mpc_policy_encodes_episode_starts_and_updates_the_others() -> None:
    """First call (state None): encode every env. Then update(state, the actions returned,
    obs) for running envs, and encode for the envs whose episode starts, whose warm starts
    are reset while the others' are kept."""
    model = RecordingLQModel()
    policy = lq_policy(model)
    obs = LQ_X0.astype(np.float32)
    actions, state = policy.predict(obs)
    assert actions.shape == (3, 2) and actions.dtype == np.float32
    assert isinstance(state, MPCState) and model.log == [("encode", 3)]
    torch.testing.assert_close(state.latent["x"], torch.tensor(obs))
    planner = policy.planner
    assert isinstance(planner, CEMPlanner)
    warm = planner.warm_start
    assert warm is not None
    nxt = obs @ LQ_A.T.astype(np.float32) + actions @ LQ_B.T.astype(np.float32)
    nxt[1] = [5.0, 5.0]  # env 1 starts a new episode
    starts = np.array([False, True, False])
    seen: list[torch.Tensor] = []
    plan = planner.plan

    def spy(latent: wf.State) -> Any:
        seen.append(planner.warm_start)  # type: ignore[arg-type]
        return plan(latent)

    planner.plan = spy  # type: ignore[method-assign]
    _, state = policy.predict(nxt, state=state, episode_start=starts)
    assert model.log[1:] == [("update", 3), ("encode", 1)]
    torch.testing.assert_close(model.last_update_action, torch.tensor(actions))
    torch.testing.assert_close(state.latent["x"], torch.tensor(nxt))
    torch.testing.assert_close(seen[0][:, [0, 2]], warm[:, [0, 2]])
    assert (seen[0][:, 1] == 0).all()


def test_mpc_policy_single_observation_and_non_deterministic_actions() -> None:
    """An unbatched observation gives an unbatched action; deterministic=False samples around the
    planned action with the planner's final spread, reproducibly by the policy's seed."""
    model = lq_model()
    obs = LQ_X0[0].astype(np.float32)
    action, _ = lq_policy(model).predict(obs)
    assert action.shape == (2,)

    def sampled(seed: int) -> np.ndarray:
        return lq_policy(model, seed=seed).predict(obs, deterministic=False)[0]

    np.testing.assert_array_equal(sampled(0), sampled(0))
    assert not np.array_equal(sampled(0), sampled(1))
    assert not np.array_equal(sampled(0), action)
    assert np.all(np.abs(sampled(0)) <= LQ_BOUND)


def test_mpc_policy_validates_its_inputs() -> None:
    model = lq_model()
    planner = CEMPlanner(model, low=-LQ_BOUND, high=LQ_BOUND)
    with pytest.raises(ConfigError, match=r"expected a Box of shape \(2,\)"):
        MPCPolicy(model, planner, gym.spaces.Box(-1, 1, (3,), np.float32))
    with pytest.raises(ConfigError, match=r"expected a Box of shape \(2,\)"):
        MPCPolicy(model, planner, gym.spaces.Discrete(2))
    with pytest.raises(ConfigError, match="planner's low bound .* lies outside the action space"):
        MPCPolicy(model, planner, gym.spaces.Box(-1, 1, (2,), np.float32))
    with pytest.raises(ConfigError, match="expected a Planner"):
        MPCPolicy(model, object(), gym.spaces.Box(-3, 3, (2,), np.float32))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="MPCPolicy.seed: expected an int >= 0, got -2"):
        lq_policy(model, seed=-2)
    policy = lq_policy(model)
    with pytest.raises(ContractError, match=r"expected observations of shape \[n_envs, \*\[2\]\]"):
        policy.predict(np.zeros((3, 5), np.float32))
    _, state = policy.predict(np.zeros((3, 2), np.float32))
    with pytest.raises(ContractError, match="expected episode_start of 3 flags"):
        policy.predict(np.zeros((3, 2), np.float32), state=state, episode_start=np.zeros(2, bool))
    with pytest.raises(ContractError, match="the state is for 3 envs, got observations of 2"):
        policy.predict(np.zeros((2, 2), np.float32), state=state)
    with pytest.raises(ContractError, match="expected the state it returned last"):
        policy.predict(np.zeros((3, 2), np.float32), state=("h", "c"))  # type: ignore[arg-type]


# -- planning on ONNX Runtime ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported_ensemble() -> tuple[wf.WorldModel, Any]:
    """A random ``ensemble:tiny`` (5-dim obs, 2-dim actions) and its step graph on ORT."""
    from worldflux.dream.onnx_backend import OnnxBackend
    from worldflux.export.onnx import export_graphs
    from worldflux.planners.onnx import OnnxStepper

    torch.manual_seed(0)
    model = wf.create_world_model("ensemble:tiny", obs_shape=(5,), action_dim=2).eval()
    example = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    return model, OnnxStepper(OnnxBackend(export_graphs(model, example), threads=1))


@pytest.mark.parametrize("kind", sorted(PLANNERS))
def test_planning_on_onnx_runtime_matches_torch(
    kind: str, exported_ensemble: tuple[wf.WorldModel, Any]
) -> None:
    """Same seed, same sampled transitions: the exported model plans the same actions, with the
    same predicted returns, as the torch model (to float rounding), uncertainty penalty included."""
    model, stepper = exported_ensemble
    obs = np.random.default_rng(1).normal(size=(3, 5)).astype(np.float32)
    settings = {
        "horizon": 4,
        "num_samples": 64,
        "num_elites": 8,
        "iterations": 3,
        "uncertainty_penalty": 0.5,
        "sample_transitions": True,
        "seed": 3,
    }
    on_torch = PLANNERS[kind](model, **settings)
    on_ort = PLANNERS[kind](stepper, **settings)
    start_torch, start_ort = model.encode(torch.from_numpy(obs)), stepper.encode(obs)
    goal = np.random.default_rng(2).normal(size=(3, 5)).astype(np.float32)
    goal_torch, goal_ort = model.encode(torch.from_numpy(goal)), stepper.encode(goal)
    for call in range(3):  # warm starts from the first plan; the third plans towards a goal
        if call < 2:
            a, b = on_torch.plan(start_torch), on_ort.plan(start_ort)
        else:
            a, b = on_torch.plan(start_torch, goal_torch), on_ort.plan(start_ort, goal_ort)
        assert b.action.shape == (3, 2)
        torch.testing.assert_close(b.action, a.action, atol=1e-5, rtol=0)
        torch.testing.assert_close(b.extras[VALUE_KEY], a.extras[VALUE_KEY], atol=1e-4, rtol=1e-5)


def test_onnx_stepper_errors_say_what_was_expected(
    exported_ensemble: tuple[wf.WorldModel, Any],
) -> None:
    from worldflux.dream.torch_backend import TorchBackend
    from worldflux.planners.onnx import OnnxStepper

    model, stepper = exported_ensemble
    with pytest.raises(
        ConfigError, match=r"MPPIPlanner.sample_transitions: expected True for OnnxStepper"
    ):
        MPPIPlanner(stepper, horizon=2, num_samples=8, num_elites=2)
    with pytest.raises(ConfigError, match=r"no deterministic mode; plan with sample_transitions"):
        stepper.step(
            stepper.encode(np.zeros((1, 5), np.float32)),
            torch.zeros(1, 2),
            deterministic=True,
            noise=None,
        )
    # a dream backend is not a stepper (its noise_spec is a dict, its step takes numpy)
    backend = TorchBackend(model, "cpu")
    with pytest.raises(
        ConfigError, match=r"got TorchBackend without noise_spec\(\), deterministic_steps"
    ):
        CEMPlanner(backend)  # type: ignore[arg-type]
    with pytest.raises(ContractError, match=r"expected observations of shape \[B, \*\[5\]\]"):
        stepper.encode(np.zeros((2, 4), np.float32))
    with pytest.raises(ConfigError, match="expected an OnnxBackend, got str"):
        OnnxStepper("step.onnx")  # type: ignore[arg-type]


# -- goal-conditioned planning ----------------------------------------------------------------------
def two_rooms_model() -> wf.WorldModel:
    """The true dynamics of ``WorldFlux/TwoRooms-State-v0``; latent features: the position."""
    from worldflux.envs.two_rooms_oracle import TwoRoomsOracle

    return TwoRoomsOracle()


def test_goal_conditioned_mpc_reaches_goals_that_random_actions_do_not() -> None:
    """MPC towards goal observations with the true two-rooms model (goals 0.8-1.2 away in the
    start's room) against uniform random actions, 100 steps each."""
    env = gym.make("WorldFlux/TwoRooms-State-v0")
    model = two_rooms_model()
    planner = MPPIPlanner(model, horizon=8, num_samples=128, num_elites=16, iterations=3, seed=0)
    policy = MPCPolicy(model, planner, env.action_space)
    rng = np.random.default_rng(0)
    pairs = []
    while len(pairs) < 8:
        start, goal = rng.uniform(-0.95, 0.95, 2), rng.uniform(-0.95, 0.95, 2)
        if np.sign(start[0]) == np.sign(goal[0]) and 0.8 < np.linalg.norm(start - goal) < 1.2:
            pairs.append({"start": start, "goal": goal})

    def success(act: Callable[[np.ndarray, bool], np.ndarray]) -> int:
        reached = 0
        for options in pairs:
            obs, _ = env.reset(seed=0, options=options)
            first, done, info = True, False, {}
            while not done:
                obs, _, terminated, truncated, info = env.step(act(obs, first))
                first, done = False, terminated or truncated
            reached += bool(info["success"])
        return reached

    state: list[Any] = [None]

    def planned(obs: np.ndarray, first: bool) -> np.ndarray:
        if first:
            policy.set_goal(env.unwrapped.goal_observation())
            state[0] = None
        action, state[0] = policy.predict(obs, state[0])
        return action

    assert success(planned) == len(pairs)
    assert success(lambda obs, first: rng.uniform(-1, 1, 2).astype(np.float32)) <= 2


def test_goal_errors_say_what_was_expected() -> None:
    model = two_rooms_model()
    start = model.encode(torch.zeros(2, 2))
    planner = CEMPlanner(model, horizon=2, num_samples=8, num_elites=2)
    with pytest.raises(
        ContractError, match=r"expected a goal of B=2 rows \(one per state\), got 1"
    ):
        planner.plan(start, goal=model.encode(torch.zeros(1, 2)))
    valued = CEMPlanner(
        model, horizon=2, num_samples=8, num_elites=2, value_fn=lambda s: s["x"][:, 0]
    )
    with pytest.raises(ConfigError, match="expected no value_fn"):
        valued.plan(start, goal=start)
    policy = MPCPolicy(model, planner, gym.spaces.Box(-1, 1, (2,), np.float32))
    with pytest.raises(ContractError, match=r"expected observations of shape"):
        policy.set_goal(np.zeros((2, 3), np.float32))
    policy.set_goal(np.zeros((3, 2), np.float32))
    with pytest.raises(ContractError, match="the goal is for 3 envs, got observations of 2"):
        policy.predict(np.zeros((2, 2), np.float32))

    class NoGoals:
        def plan(self, state: wf.State) -> Any:
            raise AssertionError("not called")

    other = MPCPolicy(model, NoGoals(), gym.spaces.Box(-1, 1, (2,), np.float32))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"expected a planner whose plan\(\) takes a goal"):
        other.set_goal(np.zeros(2, np.float32))


def test_goals_per_env_masks_broadcast_and_images_as_gymnasium_gives_them() -> None:
    """One goal for every env broadcasts; a mask replaces some envs' goals only; channel-last
    images (gymnasium's layout) reach a model of [C, H, W] observations transposed."""
    model = two_rooms_model()
    space = gym.spaces.Box(-1, 1, (2,), np.float32)
    planner = MPPIPlanner(model, horizon=4, num_samples=64, num_elites=8, iterations=2, seed=0)
    policy = MPCPolicy(model, planner, space)
    policy.set_goal(np.array([0.5, 0.5], np.float32))  # one goal, three envs
    actions, _ = policy.predict(np.zeros((3, 2), np.float32))
    assert (actions > 0.2).all()  # every env heads up and right
    policy.set_goal(np.array([[0.5, 0.5], [-0.5, -0.5], [0.5, 0.5]], np.float32))
    policy.set_goal(
        np.array([[-0.5, 0.5], [0.0, 0.0], [0.0, 0.0]], np.float32), mask=[True, False, False]
    )
    actions, _ = policy.predict(np.zeros((3, 2), np.float32))
    assert actions[0, 0] < -0.2 < 0.2 < actions[0, 1]  # replaced: up and left
    assert (actions[1] < -0.2).all() and (actions[2] > 0.2).all()  # kept
    with pytest.raises(ContractError, match="with a mask, expected goals already set"):
        MPCPolicy(model, planner, space).set_goal(np.zeros((3, 2), np.float32), mask=[True] * 3)
    valued = MPPIPlanner(
        model, horizon=2, num_samples=8, num_elites=2, value_fn=lambda s: s["x"][:, 0]
    )
    with pytest.raises(ConfigError, match="expected a planner without value_fn"):
        MPCPolicy(model, valued, space).set_goal(np.zeros(2, np.float32))

    torch.manual_seed(0)
    image_model = wf.create_world_model("jepa:tiny", obs_shape=(1, 16, 16), action_dim=2).eval()
    image_planner = MPPIPlanner(image_model, horizon=2, num_samples=8, num_elites=2)
    image_policy = MPCPolicy(image_model, image_planner, space)
    frames = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 1), dtype=np.uint8)
    image_policy.set_goal(frames)
    with torch.no_grad():
        expected = image_model.encode(torch.from_numpy(frames.transpose(0, 3, 1, 2).copy()))
    assert image_policy._goal is not None
    torch.testing.assert_close(image_policy._goal["z"], expected["z"])
    actions, _ = image_policy.predict(frames)
    assert actions.shape == (2, 2)


def test_worldflux_plan_goal_path_gives_each_env_its_goal() -> None:
    """``planned_episodes(goal=True)`` (``worldflux plan --goal``) hands every env's goal
    observation to the policy after the reset and records which episodes ended at the goal:
    with the true model 4 of 6 random start-goal pairs are reached, none without the goal."""
    from worldflux.rl.plan import planned_episodes

    model, space = two_rooms_model(), gym.spaces.Box(-1, 1, (2,), np.float32)
    reached = {}
    for goal in (True, False):
        planner = MPPIPlanner(model, horizon=8, num_samples=128, num_elites=16, iterations=3)
        episodes = planned_episodes(
            model, planner, "WorldFlux/TwoRooms-State-v0", space, 6, 0, goal=goal
        )
        assert episodes.terminated is not None
        np.testing.assert_array_equal(episodes.terminated, episodes.lengths < 100)
        reached[goal] = int(episodes.terminated.sum())
    assert reached == {True: 4, False: 0}
    with pytest.raises(ConfigError, match="goal: expected an env with goal_observation"):
        planned_episodes(model, planner, "Reacher-v5", space, 1, 0, goal=True)  # Box(2) actions
