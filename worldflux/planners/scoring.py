"""Scoring imagined action sequences: one batched model call per horizon step.

The planners repeat the ``B`` states of a batch to ``R = B x M`` rows (``M`` candidates per
state, row ``b * M + m``) and roll every candidate out at once: one ``transition`` and one
``decode`` per horizon step for all ``R`` rows, never a Python loop over envs or candidates.

The score of a candidate is its predicted discounted return::

    score = sum_{t < H} discount**t * alive_t * (reward_t - uncertainty_penalty * uncertainty_t)
            + discount**H * alive_H * value_fn(state_H)

With a goal (goal-conditioned planning, as PLDM and DINO-WM plan), the reward is the negative
distance in the model's latent features to the goal's features, and episode ends do not weigh::

    score = -sum_{t < H} discount**t * (||phi(state_{t+1}) - phi(goal)||_2
                                        + uncertainty_penalty * uncertainty_t)

with ``phi`` the state's latent features (:meth:`Stepper.latent`; the model's ``latent_keys``).

``reward_t`` and ``uncertainty_t`` come from one imagined step (a :class:`Stepper`): for a torch
world model ``decode(transition(state_t, action_t))`` (the reward for taking ``action_t``;
``uncertainty`` ``[R]`` where the family gives one), for an exported model the same from its ONNX
step graph (:class:`~worldflux.planners.onnx.OnnxStepper`). ``alive_0 = 1`` and
``alive_{t+1} = alive_t * continue_t`` with ``continue_t`` the predicted probability that the
episode goes on after ``action_t`` (taken as 1 when the model predicts none).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from ..core.errors import ConfigError, ContractError
from ..core.model import WorldModel
from ..core.noise import NoiseSpec, sample_noise_torch
from ..core.payloads import CONTINUE
from ..core.shapes import check_shape
from ..core.state import State

#: ``value_fn(state) -> [R]``: the value of the imagined states after the last step (e.g. a
#: critic or a value head), bootstrapping the return beyond the horizon.
ValueFn = Callable[[State], torch.Tensor]
#: ``action_fn(t, state) -> [R, A]``: the actions of horizon step ``t`` for the ``R`` rows of
#: ``state`` (the imagined states before step ``t``).
ActionFn = Callable[[int, State], torch.Tensor]


@dataclass
class ImaginedStep:
    """One imagined step of ``R`` rows.

    Attributes:
        state: the next state (``R`` rows).
        reward: ``[R]`` predicted rewards for the actions taken.
        continue_prob: ``[R]`` probability that the episode goes on, or None when the model
            predicts no episode ends.
        uncertainty: ``[R]`` epistemic uncertainty, or None for models without one.
    """

    state: State
    reward: torch.Tensor
    continue_prob: torch.Tensor | None
    uncertainty: torch.Tensor | None


@runtime_checkable
class Stepper(Protocol):
    """What a :class:`ReturnScorer` rolls candidates out with."""

    #: A, the action size
    action_dim: int
    #: where states, actions and noise live
    device: torch.device
    #: whether ``step(..., deterministic=True)`` is supported (False: every step samples from
    #: explicit noise, so planners must use ``sample_transitions=True``)
    deterministic_steps: bool

    def noise_spec(self) -> Mapping[str, NoiseSpec]:
        """The explicit noise of a stochastic step (``{}`` for a deterministic model)."""
        ...

    def latent(self, state: State) -> torch.Tensor:
        """The latent features ``[R, F]`` of ``state`` (what goal distances are measured in)."""
        ...

    def step(
        self,
        state: State,
        action: torch.Tensor,
        *,
        deterministic: bool,
        noise: Mapping[str, torch.Tensor] | None,
    ) -> ImaginedStep:
        """One step of all ``R`` rows: actions ``[R, A]``, noise ``{k: [R, ...]}`` or None."""
        ...


def latent_features(state: State, keys: tuple[str, ...]) -> torch.Tensor:
    """The ``keys`` tensors of ``state``, flattened per row and concatenated: ``[R, F]``."""
    return torch.cat([state[k].reshape(state.batch_size, -1).float() for k in keys], 1)


class ModelStepper:
    """A torch :class:`~worldflux.core.model.WorldModel` as a :class:`Stepper`:
    ``decode(transition(state, action))``."""

    def __init__(self, model: WorldModel) -> None:
        self.model = model
        self.action_dim = int(model.config.action_dim)
        self.device = model.device
        self.deterministic_steps = True

    def noise_spec(self) -> Mapping[str, NoiseSpec]:
        return self.model.noise_spec()

    def latent(self, state: State) -> torch.Tensor:
        return latent_features(state, self.model.latent_keys())

    def step(
        self,
        state: State,
        action: torch.Tensor,
        *,
        deterministic: bool,
        noise: Mapping[str, torch.Tensor] | None,
    ) -> ImaginedStep:
        nxt = self.model.transition(state, action, deterministic=deterministic, noise=noise)
        out = self.model.decode(nxt)
        return ImaginedStep(
            state=nxt,
            reward=out.reward,
            continue_prob=out.continue_prob if CONTINUE in out.predictions else None,
            uncertainty=out.uncertainty,
        )


class ReturnScorer:
    """Predicted returns of action sequences under a world model.

    Args:
        model: any :class:`~worldflux.core.model.WorldModel`, or a :class:`Stepper` (e.g. an
            exported model on ONNX Runtime, :class:`~worldflux.planners.onnx.OnnxStepper`).
        horizon: H, the number of imagined steps.
        discount: per-step discount in (0, 1].
        uncertainty_penalty: weight of the predicted uncertainty subtracted from every reward
            (0: ignored). A positive weight with a model that gives no uncertainty raises
            :class:`ConfigError` on the first step.
        value_fn: optional terminal value ``value_fn(state_H) -> [R]``, discounted by
            ``discount**H`` and weighted by the probability of being alive after H steps.
        sample_transitions: False: deterministic steps (the model's mean or mode, the default
            of the planners); True: stochastic transitions whose noise (the model's
            ``noise_spec``) is drawn from ``generator`` every step, so seeded runs reproduce.
        generator: the torch generator of the noise (used when ``sample_transitions``).

    The settings are validated by the planners that own a scorer.
    """

    def __init__(
        self,
        model: WorldModel | Stepper,
        *,
        horizon: int,
        discount: float,
        uncertainty_penalty: float,
        value_fn: ValueFn | None,
        sample_transitions: bool,
        generator: torch.Generator,
    ) -> None:
        self.stepper: Stepper = ModelStepper(model) if isinstance(model, WorldModel) else model
        self.horizon = horizon
        self.discount = discount
        self.uncertainty_penalty = uncertainty_penalty
        self.value_fn = value_fn
        self.sample_transitions = sample_transitions
        self.generator = generator

    def _noise(self, rows: int, device: torch.device) -> dict[str, torch.Tensor] | None:
        if not self.sample_transitions:
            return None
        spec = self.stepper.noise_spec()
        if not spec:
            return None
        return sample_noise_torch(spec, (rows,), device=device, generator=self.generator)

    def score(
        self, start: State, action_fn: ActionFn, goal: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Returns ``[R]`` of rolling out ``action_fn``'s actions from ``start`` (``R`` rows).

        ``action_fn(t, state_t)`` gives the ``[R, A]`` actions of step ``t``; it sees the imagined
        state so that a policy prior can act on it. ``goal``: ``[R, F]`` latent features of each
        row's goal (see the module docstring), or None to score predicted rewards.

        Raises:
            ConfigError: ``uncertainty_penalty > 0`` and the model gives no uncertainty; a goal
                with a ``value_fn``.
            ContractError: an action, value or goal of the wrong shape, or a non-finite return.
        """
        stepper = self.stepper
        rows = start.batch_size
        dims = {"R": rows, "A": stepper.action_dim}
        if goal is not None and self.value_fn is not None:
            raise ConfigError(
                "planner: a goal replaces the predicted rewards, so expected no value_fn (the "
                "value of rewards) with it, got one."
            )
        returns = torch.zeros(rows, device=start.device)
        alive = torch.ones(rows, device=start.device)
        weight = 1.0
        state = start
        for t in range(self.horizon):
            action = check_shape("planner", f"actions[{t}]", action_fn(t, state), ("R", "A"), dims)
            out = stepper.step(
                state,
                action,
                deterministic=not self.sample_transitions,
                noise=self._noise(rows, action.device),
            )
            state = out.state
            if goal is None:
                reward = out.reward.float()
            else:
                features = stepper.latent(state)
                if t == 0:
                    check_shape(
                        "planner", "goal", goal, ("R", "F"), {**dims, "F": features.shape[1]}
                    )
                reward = -(features - goal).norm(dim=1)
            if self.uncertainty_penalty > 0:
                if out.uncertainty is None:
                    raise ConfigError(
                        f"uncertainty_penalty={self.uncertainty_penalty} needs a model that gives "
                        f"an uncertainty [R]; {_name(stepper)} gave None (set "
                        "uncertainty_penalty=0)."
                    )
                reward = reward - self.uncertainty_penalty * out.uncertainty.float()
            returns = returns + weight * alive * reward
            if out.continue_prob is not None and goal is None:
                alive = alive * out.continue_prob.float()
            weight *= self.discount
        if self.value_fn is not None:
            value = check_shape("planner", "value_fn(state)", self.value_fn(state), ("R",), dims)
            returns = returns + weight * alive * value.float()
        if not bool(torch.isfinite(returns).all()):
            raise ContractError(
                f"planner: expected finite predicted returns, got {int((~torch.isfinite(returns)).sum())} "
                f"non-finite of {rows} (the model's rewards, uncertainty or value_fn)."
            )
        return returns


def _name(stepper: Stepper) -> str:
    """The model's class name (``decode`` of a torch model), for messages."""
    if isinstance(stepper, ModelStepper):
        return f"{type(stepper.model).__name__}.decode"
    return type(stepper).__name__
