"""The shared machinery of the sampling planners (:class:`~worldflux.planners.CEMPlanner`,
:class:`~worldflux.planners.MPPIPlanner`): settings, action bounds, the seeded generator, warm
starts, policy-prior mixing and the search loop. Subclasses only say how the elites of a round
are weighted when the sampling distribution is refitted to them.

Shapes: B = states planned for (envs), H = horizon, A = action dim, N = ``num_samples`` Gaussian
candidates and P = ``num_prior_samples`` policy-prior candidates per state, M = P + N, R = B x M.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..core.errors import ConfigError, ContractError
from ..core.model import WorldModel
from ..core.planner import PLANNER_HORIZON_KEY, PlannerOutput
from ..core.shapes import check_shape
from ..core.state import State
from .scoring import ModelStepper, ReturnScorer, Stepper, ValueFn

#: ``extras`` key of the plan's predicted return ``[B]``.
VALUE_KEY = "wf.planner.value"
#: ``extras`` key of the whole chosen plan ``[H, B, A]`` (its first step is the action).
PLAN_KEY = "wf.planner.plan"
#: ``extras`` key of the standard deviation ``[B, A]`` of the final sampling distribution of
#: the first action (what :class:`~worldflux.planners.MPCPolicy` samples from when it is asked
#: for non-deterministic actions).
ACTION_STD_KEY = "wf.planner.action_std"

#: ``prior_fn(state) -> [B', A]``: actions of a policy prior for the ``B'`` rows of ``state``.
PriorFn = Callable[[State], torch.Tensor]
#: Action bounds: one float for every dimension, or ``[A]`` values.
Bound = float | Sequence[float] | np.ndarray | torch.Tensor


def check_int(owner: str, name: str, value: Any, minimum: int) -> int:
    """``value`` if it is an int (not a bool) >= ``minimum``, else :class:`ConfigError`."""
    if not isinstance(value, int | np.integer) or isinstance(value, bool | np.bool_):
        raise ConfigError(f"{owner}.{name}: expected an int >= {minimum}, got {value!r}.")
    if value < minimum:
        raise ConfigError(f"{owner}.{name}: expected an int >= {minimum}, got {value}.")
    return int(value)


def check_float(
    owner: str,
    name: str,
    value: Any,
    *,
    low: float,
    high: float = math.inf,
    low_open: bool = False,
) -> float:
    """``value`` as a finite float in ``[low, high]`` (``(low, high]`` when ``low_open``)."""
    interval = f"{'(' if low_open else '['}{low}, {high}]"
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
        raise ConfigError(f"{owner}.{name}: expected a finite number in {interval}, got {value!r}.")
    number = float(value)
    if not math.isfinite(number) or number > high or number < low or (low_open and number == low):
        raise ConfigError(f"{owner}.{name}: expected a finite number in {interval}, got {value!r}.")
    return number


def check_callable(owner: str, name: str, value: Any) -> Any:
    if value is not None and not callable(value):
        raise ConfigError(
            f"{owner}.{name}: expected a callable or None, got {type(value).__name__}."
        )
    return value


def action_bound(owner: str, name: str, value: Bound, action_dim: int) -> torch.Tensor:
    """A float or ``[A]`` values as a finite float32 tensor ``[A]``."""
    try:
        tensor = torch.as_tensor(
            value.detach().cpu() if isinstance(value, torch.Tensor) else value,
            dtype=torch.float32,
        )
    except (TypeError, ValueError, RuntimeError):
        raise ConfigError(
            f"{owner}.{name}: expected a float or {action_dim} floats, got {value!r}."
        ) from None
    if tensor.dim() == 0:
        tensor = tensor.expand(action_dim).clone()
    if tuple(tensor.shape) != (action_dim,):
        raise ConfigError(
            f"{owner}.{name}: expected a float or shape [A={action_dim}], "
            f"got shape {list(tensor.shape)}."
        )
    if not bool(torch.isfinite(tensor).all()):
        raise ConfigError(f"{owner}.{name}: expected finite values, got {tensor.tolist()}.")
    return tensor


def as_stepper(owner: str, model: Any) -> Stepper:
    """A torch world model wrapped as a :class:`Stepper`, or ``model`` if it is one; else a
    :class:`ConfigError` naming what is missing."""
    if isinstance(model, WorldModel):
        return ModelStepper(model)
    missing = [
        name
        for name, ok in (
            ("step()", callable(getattr(model, "step", None))),
            ("noise_spec()", callable(getattr(model, "noise_spec", None))),
            ("latent()", callable(getattr(model, "latent", None))),
            ("action_dim", isinstance(getattr(model, "action_dim", None), int)),
            ("device (torch.device)", isinstance(getattr(model, "device", None), torch.device)),
            ("deterministic_steps", isinstance(getattr(model, "deterministic_steps", None), bool)),
        )
        if not ok
    ]
    if missing or not isinstance(model, Stepper):
        raise ConfigError(
            f"{owner}.model: expected a WorldModel or a Stepper (e.g. OnnxStepper), got "
            f"{type(model).__name__}" + (f" without {', '.join(missing)}." if missing else ".")
        )
    return model


class SamplingPlanner(ABC):
    """Iterative sampling-based planning over any world model (shooting in action space).

    Each :meth:`plan` call, for every state of the batch at once:

    1. starts from a Gaussian over action sequences ``[H, B, A]``: the mean is the warm start
       (the previous plan of that env shifted by one step, its last step reset to the middle of
       the bounds; the middle of the bounds for envs without one), the standard deviation is
       ``init_std`` times half the action range;
    2. for each of ``iterations`` rounds draws N sequences from it, clamped to ``[low, high]``
       (with P policy-prior sequences, see below), scores all ``B x M`` candidates in one batched
       rollout (:class:`~worldflux.planners.scoring.ReturnScorer`: one ``transition`` + ``decode``
       per horizon step), keeps the ``num_elites`` best-scoring candidates of every state and
       refits the mean and standard deviation (per step and action dimension) to them, weighted
       by the subclass's rule (:class:`~worldflux.planners.CEMPlanner`: equally;
       :class:`~worldflux.planners.MPPIPlanner`: by ``exp((score - best) / temperature)``); the
       standard deviation is floored at ``min_std`` times half the range;
    3. returns the first step of the final mean as the action, and the weighted mean score of
       the final round's elites as the plan's predicted return (no extra model call).

    Policy-prior mixing (as TD-MPC2 does): with ``prior_fn`` and ``num_prior_samples`` = P >= 1,
    P more candidates per state follow the prior: in the first round each of their steps is
    ``prior_fn(imagined states) -> [B x P, A]`` (clamped to the bounds), computed inside the
    same batched rollout; later rounds score the same P sequences again beside the new Gaussian
    samples. A stochastic prior should draw from its own seeded generator to stay reproducible.

    ``centre_on_prior`` (for offline models, whose scores are unreliable away from the data):
    the P prior sequences are rolled out first (one more batched rollout of ``B x P`` rows), and
    the first round's Gaussian is centred on their mean instead of the warm start, so that the
    search is a local refinement of the prior within ``init_std``.

    Randomness: every sample comes from one ``torch.Generator`` on the model's device, seeded
    with ``seed`` at construction and by :meth:`reset` (without a mask), so a seeded planner
    reproduces its actions exactly. Transitions are deterministic (the model's mean or mode)
    unless ``sample_transitions``, which then draws the model's ``noise_spec`` noise from the same
    generator.

    Models: any torch :class:`~worldflux.core.model.WorldModel`, or a
    :class:`~worldflux.planners.scoring.Stepper` such as
    :class:`~worldflux.planners.onnx.OnnxStepper` (an exported model on ONNX Runtime; it samples
    its transitions, so plan with ``sample_transitions=True``). The model runs as it is (call
    ``model.eval()`` first where the family's layers care), under ``torch.no_grad()``. The
    planner keeps its warm starts between calls, so it serves one batch
    of envs (the same B every call) until :meth:`reset`.
    """

    def __init__(
        self,
        model: WorldModel | Stepper,
        *,
        horizon: int = 12,
        num_samples: int = 512,
        num_elites: int = 64,
        iterations: int = 6,
        low: Bound = -1.0,
        high: Bound = 1.0,
        init_std: float = 1.0,
        min_std: float = 0.05,
        discount: float = 1.0,
        uncertainty_penalty: float = 0.0,
        value_fn: ValueFn | None = None,
        prior_fn: PriorFn | None = None,
        num_prior_samples: int = 0,
        centre_on_prior: bool = False,
        sample_transitions: bool = False,
        seed: int = 0,
    ) -> None:
        owner = type(self).__name__
        stepper = as_stepper(owner, model)
        self.model = model
        self.horizon = check_int(owner, "horizon", horizon, 1)
        self.num_samples = check_int(owner, "num_samples", num_samples, 1)
        self.iterations = check_int(owner, "iterations", iterations, 1)
        self.init_std = check_float(owner, "init_std", init_std, low=0.0, low_open=True)
        self.min_std = check_float(owner, "min_std", min_std, low=0.0, high=self.init_std)
        self.discount = check_float(owner, "discount", discount, low=0.0, high=1.0, low_open=True)
        self.uncertainty_penalty = check_float(
            owner, "uncertainty_penalty", uncertainty_penalty, low=0.0
        )
        self.value_fn: ValueFn | None = check_callable(owner, "value_fn", value_fn)
        self.prior_fn: PriorFn | None = check_callable(owner, "prior_fn", prior_fn)
        self.num_prior_samples = check_int(owner, "num_prior_samples", num_prior_samples, 0)
        if (self.prior_fn is None) != (self.num_prior_samples == 0):
            raise ConfigError(
                f"{owner}: prior_fn and num_prior_samples go together: expected both (a callable "
                f"and num_prior_samples >= 1) or neither, got prior_fn="
                f"{'None' if self.prior_fn is None else 'a callable'}, "
                f"num_prior_samples={self.num_prior_samples}."
            )
        if not isinstance(centre_on_prior, bool):
            raise ConfigError(f"{owner}.centre_on_prior: expected a bool, got {centre_on_prior!r}.")
        if centre_on_prior and self.prior_fn is None:
            raise ConfigError(
                f"{owner}.centre_on_prior: expected a prior_fn (and num_prior_samples >= 1) to "
                "centre the search on, got none."
            )
        self.centre_on_prior = centre_on_prior
        if not isinstance(sample_transitions, bool):
            raise ConfigError(
                f"{owner}.sample_transitions: expected a bool, got {sample_transitions!r}."
            )
        if not sample_transitions and not stepper.deterministic_steps:
            raise ConfigError(
                f"{owner}.sample_transitions: expected True for {type(stepper).__name__}, whose "
                "steps sample from explicit noise and have no deterministic mode (or plan with "
                "the torch model for deterministic transitions), got False."
            )
        self.sample_transitions = sample_transitions
        self.num_elites = check_int(owner, "num_elites", num_elites, 1)
        candidates = self.num_samples + self.num_prior_samples
        if self.num_elites > candidates:
            raise ConfigError(
                f"{owner}.num_elites: expected at most num_samples + num_prior_samples = "
                f"{candidates}, got {self.num_elites}."
            )
        self.seed = check_int(owner, "seed", seed, 0)

        self.action_dim = int(stepper.action_dim)
        self.device = stepper.device
        self.low = action_bound(owner, "low", low, self.action_dim).to(self.device)
        self.high = action_bound(owner, "high", high, self.action_dim).to(self.device)
        if not bool((self.low < self.high).all()):
            raise ConfigError(
                f"{owner}: expected low < high in every action dimension, got low="
                f"{self.low.tolist()}, high={self.high.tolist()}."
            )
        half = (self.high - self.low) / 2
        self._middle = (self.low + self.high) / 2  # [A]
        self._init_std = self.init_std * half  # [A]
        self._min_std = self.min_std * half  # [A]
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(self.seed)
        self.stepper = stepper
        self.scorer = ReturnScorer(
            stepper,
            horizon=self.horizon,
            discount=self.discount,
            uncertainty_penalty=self.uncertainty_penalty,
            value_fn=self.value_fn,
            sample_transitions=self.sample_transitions,
            generator=self.generator,
        )
        self._warm: torch.Tensor | None = None  # [H, B, A]

    # -- warm starts ------------------------------------------------------------------------------
    @property
    def warm_start(self) -> torch.Tensor | None:
        """The next call's initial mean ``[H, B, A]`` (a copy), or None before the first plan
        and after :meth:`reset`."""
        return None if self._warm is None else self._warm.clone()

    def reset(self, mask: torch.Tensor | np.ndarray | Sequence[bool] | None = None) -> None:
        """Forget warm starts.

        Args:
            mask: None: forget every env's warm start and re-seed the generator with ``seed``
                (the planner then acts exactly as when it was built); a bool ``[B]``: reset the
                warm starts of the envs where it is True (e.g. whose episode just started) to the
                middle of the bounds, leaving the others and the generator as they are.

        Raises:
            ContractError: a mask that is not bool ``[B]`` (B of the previous plan).
        """
        if mask is None:
            self._warm = None
            self.generator.manual_seed(self.seed)
            return
        owner = f"{type(self).__name__}.reset"
        flags = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask)
        if flags.dtype != torch.bool or flags.dim() != 1:
            raise ContractError(
                f"{owner}: expected a bool mask [B], got {flags.dtype} of shape "
                f"{list(flags.shape)}."
            )
        if self._warm is None:
            return
        if flags.shape[0] != self._warm.shape[1]:
            raise ContractError(
                f"{owner}: expected a mask of the B={self._warm.shape[1]} envs planned for, "
                f"got {flags.shape[0]}."
            )
        self._warm[:, flags.to(self.device)] = self._middle

    def _initial_mean(self, batch: int) -> torch.Tensor:
        if self._warm is None:
            return self._middle.expand(self.horizon, batch, self.action_dim).clone()
        if self._warm.shape[1] != batch:
            raise ContractError(
                f"{type(self).__name__}.plan: the warm starts are for B={self._warm.shape[1]} "
                f"envs, got a state of B={batch}; call reset() to plan for another batch."
            )
        return self._warm.clone()

    # -- planning -------------------------------------------------------------------------------
    def _clamp(self, actions: torch.Tensor) -> torch.Tensor:
        return torch.clamp(actions, min=self.low, max=self.high)

    def _check_state(self, state: State) -> int:
        owner = f"{type(self).__name__}.plan"
        if not isinstance(state, State):
            raise ContractError(f"{owner}: expected a State, got {type(state).__name__}.")
        if state.batch_size < 1:
            raise ContractError(f"{owner}: expected a state of B >= 1 rows, got B=0.")
        if state.device != self.device:
            raise ContractError(
                f"{owner}: expected a state on the model's device {self.device}, got "
                f"{state.device}."
            )
        return int(state.batch_size)

    def _prior_actions(self, state: State, batch: int, candidates: int) -> torch.Tensor:
        """``prior_fn`` on the P prior rows of each env's ``candidates`` rows -> ``[B, P, A]``."""
        assert self.prior_fn is not None
        p, a = self.num_prior_samples, self.action_dim
        rows = state.map(lambda t: t.reshape(batch, candidates, *t.shape[1:])[:, :p].flatten(0, 1))
        actions = check_shape(
            type(self).__name__,
            "prior_fn(state)",
            self.prior_fn(rows),
            ("B'", "A"),
            {"B'": batch * p, "A": a},
        )
        return self._clamp(actions.to(self.low.dtype)).view(batch, p, a)

    def _score(
        self,
        start: State,
        samples: torch.Tensor,
        prior: torch.Tensor | None,
        goal_rows: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scores ``[B, M]`` of the prior sequences ``[H, B, P, A]`` (computed on the way when
        None and P >= 1) and the Gaussian ``samples [H, B, N, A]``; also the prior sequences.
        ``goal_rows``: ``[B x M, F]`` goal features of every candidate row, or None."""
        _, b, n, a = samples.shape
        p = self.num_prior_samples
        m = n + p
        computed: list[torch.Tensor] = []

        def actions_at(t: int, state: State) -> torch.Tensor:
            step = samples[t]
            if p:
                if prior is None:
                    computed.append(self._prior_actions(state, b, m))
                    step = torch.cat([computed[-1], step], 1)
                else:
                    step = torch.cat([prior[t], step], 1)
            return step.reshape(b * m, a)

        returns = self.scorer.score(start, actions_at, goal_rows)
        if p and prior is None:
            prior = torch.stack(computed)
        return returns.view(b, m), prior

    def _prior_sequences(self, state: State, batch: int, goal: torch.Tensor | None) -> torch.Tensor:
        """The P prior sequences ``[H, B, P, A]`` of every state, rolled out on their own."""
        p = self.num_prior_samples
        start = state.map(lambda t: t.repeat_interleave(p, dim=0))
        steps: list[torch.Tensor] = []

        def actions_at(t: int, rows: State) -> torch.Tensor:
            steps.append(self._prior_actions(rows, batch, p))
            return steps[-1].reshape(batch * p, self.action_dim)

        goal_rows = None if goal is None else goal.repeat_interleave(p, dim=0)
        self.scorer.score(start, actions_at, goal_rows)
        return torch.stack(steps)

    @abstractmethod
    def _weights(self, scores: torch.Tensor) -> torch.Tensor:
        """Weights ``[B, K]`` (summing to 1 over K) of the elites from their ``scores [B, K]``
        (sorted, best first)."""

    def _refit(
        self, candidates: torch.Tensor, scores: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``candidates [H, B, M, A]`` and their ``scores [B, M]`` -> the weighted mean and
        standard deviation ``[H, B, A]`` of the elites (before the floor) and their weighted
        mean score ``[B]`` (the plan's predicted return)."""
        h, b, _, a = candidates.shape
        k = self.num_elites
        top, index = scores.topk(k, dim=1)  # [B, K]
        elites = candidates.gather(2, index[None, :, :, None].expand(h, b, k, a))  # [H, B, K, A]
        weights = self._weights(top)  # [B, K]
        w = weights[None, :, :, None]
        mean = (w * elites).sum(2)
        var = (w * (elites - mean.unsqueeze(2)) ** 2).sum(2)
        return mean, var.clamp_min(0).sqrt(), (weights * top).sum(1)

    def plan(self, state: State, goal: State | None = None) -> PlannerOutput:
        """Plan for the ``B`` states of ``state``; with ``goal`` (B rows: e.g. the encoded goal
        observations), towards the goal in the model's latent features instead of for reward
        (see :mod:`~worldflux.planners.scoring`).

        Returns:
            :class:`~worldflux.core.planner.PlannerOutput` with ``action [B, A]`` (the first step
            of the final mean), and ``extras``: ``"wf.planner.horizon"`` (H),
            ``"wf.planner.value"`` ``[B]`` (the plan's predicted return, see the subclass),
            ``"wf.planner.plan"`` ``[H, B, A]`` (the final mean) and ``"wf.planner.action_std"``
            ``[B, A]`` (the final standard deviation of the first action).
        """
        batch = self._check_state(state)
        goal_features = None
        if goal is not None:
            if self._check_state(goal) != batch:
                raise ContractError(
                    f"{type(self).__name__}.plan: expected a goal of B={batch} rows (one per "
                    f"state), got {goal.batch_size}."
                )
            with torch.no_grad():
                goal_features = self.stepper.latent(goal)
        h, n, a = self.horizon, self.num_samples, self.action_dim
        m = n + self.num_prior_samples
        goal_rows = None if goal_features is None else goal_features.repeat_interleave(m, dim=0)
        mean = self._initial_mean(batch)
        std = self._init_std.expand(h, batch, a)
        start = state.map(lambda t: t.repeat_interleave(m, dim=0))
        prior: torch.Tensor | None = None
        value = torch.zeros(batch, device=self.device)  # set by every round
        with torch.no_grad():
            if self.centre_on_prior:
                prior = self._prior_sequences(state, batch, goal_features)
                mean = prior.mean(2)
            for _ in range(self.iterations):
                eps = torch.randn((h, batch, n, a), generator=self.generator, device=self.device)
                samples = self._clamp(mean.unsqueeze(2) + std.unsqueeze(2) * eps)
                scores, prior = self._score(start, samples, prior, goal_rows)
                candidates = samples if prior is None else torch.cat([prior, samples], 2)
                mean, std, value = self._refit(candidates, scores)
                std = torch.maximum(std, self._min_std)
        self._warm = torch.cat([mean[1:], self._middle.expand(1, batch, a)], 0)
        return PlannerOutput(
            action=mean[0].clone(),
            extras={
                PLANNER_HORIZON_KEY: h,
                VALUE_KEY: value,
                PLAN_KEY: mean,
                ACTION_STD_KEY: std[0].clone(),
            },
        )
