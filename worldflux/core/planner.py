"""Planner output contract (CEM / MPPI planners and policies over world models).

A planner returns a :class:`PlannerOutput` whose ``extras["wf.planner.horizon"]`` (an int >= 1)
says how many steps it looked ahead; callers read it through :data:`PLANNER_HORIZON_KEY`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from .errors import ContractError
from .shapes import check_shape
from .state import State

PLANNER_HORIZON_KEY = "wf.planner.horizon"


@dataclass
class PlannerOutput:
    """Attributes:
    action: ``[B, A]`` first action of the chosen plan.
    extras: must hold ``"wf.planner.horizon"`` (int >= 1); may hold more (e.g. ``"wf.planner.
        value"``, the plan's predicted return ``[B]``).
    """

    action: torch.Tensor
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_shape("PlannerOutput", "action", self.action, ("B", "A"))
        horizon = self.extras.get(PLANNER_HORIZON_KEY)
        if horizon is None:
            raise ContractError(
                f"PlannerOutput.extras: expected key {PLANNER_HORIZON_KEY!r}, "
                f"got keys {sorted(self.extras)}."
            )
        if not isinstance(horizon, int) or isinstance(horizon, bool) or horizon < 1:
            raise ContractError(
                f"PlannerOutput.extras[{PLANNER_HORIZON_KEY!r}]: expected an int >= 1, "
                f"got {horizon!r}."
            )

    @property
    def horizon(self) -> int:
        value: int = self.extras[PLANNER_HORIZON_KEY]
        return value


@runtime_checkable
class Planner(Protocol):
    """Chooses actions for a batch of latent states."""

    def plan(self, state: State) -> PlannerOutput: ...
