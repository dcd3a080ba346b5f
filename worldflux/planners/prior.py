"""Acting with a family's policy prior: alone (:class:`PolicyPriorPlanner`), or mixed into MPPI
as TD-MPC2 plans (:func:`tdmpc2_planner`).

A family with a policy prior and a value (TD-MPC2) has two methods on its states:
``prior(state, generator=None, *, deterministic=False) -> [B, A]`` and ``value(state) -> [B]``.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Protocol, runtime_checkable

import torch

from ..core.errors import ConfigError
from ..core.model import WorldModel
from ..core.planner import PLANNER_HORIZON_KEY, PlannerOutput
from ..core.state import State
from .base import VALUE_KEY, check_int
from .mppi import MPPIPlanner

#: TD-MPC2's planning settings (Hansen et al., 2024): 3 steps, 6 rounds of 512 samples and 24
#: prior trajectories, 64 elites, standard deviations between 0.05 and 2. Its elites weigh
#: ``exp(0.5 * (score - best))``: 0.5 multiplies, so it is temperature 2 of :class:`MPPIPlanner`
#: (which divides)
TDMPC2_PLANNING: dict[str, Any] = {
    "horizon": 3,
    "num_samples": 512,
    "num_prior_samples": 24,
    "num_elites": 64,
    "iterations": 6,
    "temperature": 2.0,
    "init_std": 2.0,
    "min_std": 0.05,
}


#: Planning for a model trained offline: a local refinement of the prior's mode (the search's
#: Gaussian centred on it, std 0.1 of the half range), with TD-MPC2's value and temperature.
#: Offline, the model's scores are unreliable away from the data, where an open search finds
#: actions that only the model rewards; and the prior, constrained only in its mean, is wide
#: (std 0.6-1.7 on Walker2d), so samples from it are poor candidates.
OFFLINE_PLANNING: dict[str, Any] = {
    "prior": "mode",
    "centre_on_prior": True,
    "init_std": 0.1,
    "min_std": 0.02,
}


@runtime_checkable
class PriorModel(Protocol):
    """A world model with a policy prior and a value on its states."""

    def prior(
        self,
        state: State,
        generator: torch.Generator | None = None,
        *,
        deterministic: bool = False,
    ) -> torch.Tensor: ...

    def value(self, state: State) -> torch.Tensor: ...


def _prior_model(owner: str, model: Any) -> Any:
    if not isinstance(model, WorldModel) or not isinstance(model, PriorModel):
        raise ConfigError(
            f"{owner}: expected a world model with a policy prior and a value (prior(state) and "
            f"value(state) methods, as the tdmpc2 family has), got {type(model).__name__}."
        )
    return model


class PolicyPriorPlanner:
    """The policy prior's mode as the action, without search (``"wf.planner.horizon"`` 1 and
    the value of the state as ``"wf.planner.value"``); with :class:`MPCPolicy` it scores the
    prior alone on a real environment."""

    def __init__(self, model: WorldModel) -> None:
        self.model = _prior_model("PolicyPriorPlanner.model", model)

    def plan(self, state: State) -> PlannerOutput:
        with torch.no_grad():
            action = self.model.prior(state, deterministic=True)
            value = self.model.value(state)
        return PlannerOutput(action, {PLANNER_HORIZON_KEY: 1, VALUE_KEY: value})


def tdmpc2_planner(
    model: WorldModel, *, seed: int = 0, prior: str = "sample", **settings: Any
) -> MPPIPlanner:
    """MPPI as TD-MPC2 plans: :data:`TDMPC2_PLANNING` (``settings`` override it; the elites are
    capped at the candidates when only the samples are given), the model's discount, its value
    as the terminal value and the prior's sequences mixed into every round.

    ``prior``: ``"sample"`` (TD-MPC2): ``num_prior_samples`` sequences sampled from the prior
    (noise from a generator seeded with ``seed``); ``"mode"``: one sequence of the prior's mode
    (see :data:`OFFLINE_PLANNING`)."""
    if prior not in ("sample", "mode"):
        raise ConfigError(f"tdmpc2_planner.prior: expected 'sample' or 'mode', got {prior!r}.")
    prior_model = _prior_model("tdmpc2_planner.model", model)
    seed = check_int("tdmpc2_planner", "seed", seed, 0)
    generator = torch.Generator(device=model.device)
    generator.manual_seed(seed)
    merged = {**TDMPC2_PLANNING, **settings}
    if prior == "mode":
        merged["num_prior_samples"] = 1  # the mode is one sequence
    if "num_elites" not in settings:  # fewer samples than the default elites: keep them all
        pool = merged["num_samples"] + merged["num_prior_samples"]
        merged["num_elites"] = min(merged["num_elites"], pool)
    merged.setdefault("discount", getattr(model.config, "discount", 1.0))
    return MPPIPlanner(
        model,
        value_fn=prior_model.value,
        prior_fn=(
            partial(prior_model.prior, deterministic=True)
            if prior == "mode"
            else partial(prior_model.prior, generator=generator)
        ),
        seed=seed,
        **merged,
    )
