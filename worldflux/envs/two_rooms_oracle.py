"""The two rooms' true dynamics as a world model: the planning oracle of goal-reaching benchmarks
(a planner with the true simulator and the same search budget as a learned model's).

:class:`TwoRoomsOracle` steps positions ``[B, 2]`` exactly as :meth:`TwoRoomsEnv.move` does,
batched in torch; its state is the position, which is also its latent feature, so goal-conditioned
planners measure true Euclidean distances to the goal. It observes positions
(``WorldFlux/TwoRooms-State-v0``), never images, and has nothing to learn. Imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..core.config import WorldModelConfig
from ..core.errors import ConfigError, ContractError
from ..core.model import WorldModel
from ..core.payloads import (
    ActionPayload,
    Batch,
    ConditionPayload,
    LossOutput,
    ModelOutput,
    WorldModelInput,
)
from ..core.state import State
from .two_rooms import TwoRoomsEnv


class TwoRoomsOracle(WorldModel):
    """Exact dynamics of a :class:`TwoRoomsEnv` (its ``step_size``, ``door`` and ``wall_gap``).

    State ``{"x": [B, 2], "reward": [B]}``: the position and the reward of the step into it (0:
    the oracle plans towards goals, not rewards). Deterministic, no parameters.
    """

    decodes_observations = False

    def __init__(self, env: TwoRoomsEnv | None = None) -> None:
        super().__init__(WorldModelConfig(obs_shape=(2,), action_dim=2))
        env = env or TwoRoomsEnv("state")
        if env.observation_kind != "state":
            raise ConfigError(
                "TwoRoomsOracle: expected a TwoRoomsEnv with observation='state' (the oracle "
                f"observes positions), got observation={env.observation_kind!r}."
            )
        self.step_size, self.door, self.wall_gap = env.step_size, env.door, env.wall_gap

    def state_spec(self) -> dict[str, tuple[int | str, ...]]:
        return {"x": (2,), "reward": ()}

    def latent_keys(self) -> tuple[str, ...]:
        return ("x",)

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        return self._state(torch.zeros(batch_size, 2, device=device))

    @staticmethod
    def _state(x: torch.Tensor) -> State:
        return State({"x": x, "reward": x.new_zeros(x.shape[0])})

    def move(self, x: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Positions ``[B, 2]`` after actions ``[B, 2]``: :meth:`TwoRoomsEnv.move`, batched."""
        target = torch.clamp(x + self.step_size * torch.clamp(action, -1, 1), -1, 1)
        x0, x1 = x[:, 0], target[:, 0]
        crosses = ((x0 < 0) != (x1 < 0)) & (x0 != x1)
        y = x[:, 1] + (target[:, 1] - x[:, 1]) * (-x0) / torch.where(crosses, x1 - x0, 1.0)
        blocked = crosses & (y.abs() >= self.door / 2)
        wall = torch.where(x0 < 0, -self.wall_gap, self.wall_gap)
        return torch.stack([torch.where(blocked, wall, x1), target[:, 1]], 1)

    def encode(self, obs: WorldModelInput | torch.Tensor) -> State:
        return self._state(self.check_obs(obs).obs.float())

    def transition(
        self,
        state: State,
        action: ActionPayload | torch.Tensor,
        conditions: ConditionPayload | None = None,
        deterministic: bool = False,
        noise: Mapping[str, torch.Tensor] | None = None,
    ) -> State:
        self.check_state(state)
        if noise:
            raise ContractError(
                f"TwoRoomsOracle is deterministic: expected no noise, got keys {sorted(noise)}."
            )
        return self._state(self.move(state["x"], self.check_action(action, state.batch_size)))

    def update(
        self,
        state: State,
        action: ActionPayload | torch.Tensor,
        obs: WorldModelInput | torch.Tensor,
    ) -> State:
        self.check_state(state)
        return self.encode(obs)

    def decode(self, state: State) -> ModelOutput:
        return ModelOutput({"reward": self.check_state(state)["reward"]})

    def loss(self, batch: Batch) -> LossOutput:
        raise ConfigError(
            "TwoRoomsOracle: the true dynamics have nothing to learn; train a world model "
            "(e.g. jepa) on the two rooms' data instead."
        )

    def param_groups(self) -> list[dict[str, Any]]:
        return []
