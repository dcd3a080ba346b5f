"""Typed payloads exchanged between models, data, dream environments and trainers.

Shapes use B = batch, T = time steps, A = action dim, ``*O`` = observation shape.

Time alignment (the one convention of the library, from Minari's episode layout): a sequence of T
steps has observations ``obs[0..T]`` (T + 1 rows) and ``actions[0..T-1]``; ``rewards[t]`` is the
reward for taking ``actions[t]`` in ``obs[t]``; ``terminations[t]`` / ``truncations[t]`` say what
happened after ``actions[t]``. The continue target is ``1 - terminations`` (never truncations).

Actions reach models as float tensors ``[..., A]``; discrete actions are one-hot encoded (A = number
of choices) by the data layer and the dream environments, so every family sees one action format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .errors import ContractError
from .shapes import check_floating, check_shape
from .state import State

OBS = "obs"
REWARD = "reward"
CONTINUE = "continue"


def _check_obs_shape(
    owner: str, key: str, obs: torch.Tensor, lead: int, obs_shape: tuple[int, ...]
) -> None:
    got = tuple(obs.shape[lead:])
    if got != tuple(obs_shape):
        raise ContractError(
            f"{owner}.{key}: expected observation shape {list(obs_shape)} after {lead} leading "
            f"dim(s), got {list(got)} (full shape {list(obs.shape)})."
        )


@dataclass
class ActionPayload:
    """One step of actions.

    Attributes:
        tensor: float ``[B, A]`` (one-hot for discrete action spaces).
    """

    tensor: torch.Tensor

    def __post_init__(self) -> None:
        check_shape("ActionPayload", "tensor", self.tensor, ("B", "A"))
        check_floating("ActionPayload", "tensor", self.tensor)

    def validate(self, action_dim: int, batch_size: int | None = None) -> ActionPayload:
        dims: dict[str, int] = {"A": action_dim}
        if batch_size is not None:
            dims["B"] = batch_size
        check_shape("ActionPayload", "tensor", self.tensor, ("B", "A"), dims)
        return self

    @staticmethod
    def coerce(action: ActionPayload | torch.Tensor) -> ActionPayload:
        return action if isinstance(action, ActionPayload) else ActionPayload(action)


@dataclass
class ConditionPayload:
    """Extra conditioning inputs (goal, task id embedding, ...), each batch-first ``[B, ...]``.

    Consumed by the action conditioner of models that support conditioning.
    """

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tensors = dict(self.tensors)
        dims: dict[str, int] = {}
        for key, value in self.tensors.items():
            check_shape("ConditionPayload", key, value, ("B", "*"), dims)

    def __getitem__(self, key: str) -> torch.Tensor:
        try:
            return self.tensors[key]
        except KeyError:
            raise ContractError(
                f"ConditionPayload is missing key {key!r}; it has {sorted(self.tensors)}."
            ) from None


@dataclass
class WorldModelInput:
    """What :meth:`WorldModel.encode` / :meth:`WorldModel.update` observe.

    Attributes:
        obs: ``[B, *O]``; float, or uint8 for images (the model normalises).
        conditions: optional conditioning for this step.
    """

    obs: torch.Tensor
    conditions: ConditionPayload | None = None

    def __post_init__(self) -> None:
        check_shape("WorldModelInput", "obs", self.obs, ("B", "*"))

    def validate(self, obs_shape: tuple[int, ...]) -> WorldModelInput:
        _check_obs_shape("WorldModelInput", "obs", self.obs, 1, obs_shape)
        return self

    @staticmethod
    def coerce(obs: WorldModelInput | torch.Tensor) -> WorldModelInput:
        return obs if isinstance(obs, WorldModelInput) else WorldModelInput(obs)


@dataclass
class ModelOutput:
    """Decoded predictions for one step, as *values and probabilities* (never logits).

    Attributes:
        predictions: well-known keys ``"obs"`` ``[B, *O]``, ``"reward"`` ``[B]``,
            ``"continue"`` ``[B]`` (probability that the episode goes on); families may add more.
        uncertainty: ``[B]`` epistemic uncertainty (e.g. ensemble disagreement) or None.
        extras: anything else (planner outputs use ``extras["wf.planner.horizon"]``).
    """

    predictions: dict[str, torch.Tensor]
    uncertainty: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        dims: dict[str, int] = {}
        for key, value in self.predictions.items():
            check_shape("ModelOutput", key, value, ("B", "*"), dims)
        for key in (REWARD, CONTINUE):
            if key in self.predictions:
                check_shape("ModelOutput", key, self.predictions[key], ("B",), dims)
        if self.uncertainty is not None:
            check_shape("ModelOutput", "uncertainty", self.uncertainty, ("B",), dims)

    def _get(self, key: str) -> torch.Tensor:
        try:
            return self.predictions[key]
        except KeyError:
            raise ContractError(
                f"ModelOutput has no {key!r} prediction; it has {sorted(self.predictions)}."
            ) from None

    @property
    def obs(self) -> torch.Tensor:
        return self._get(OBS)

    @property
    def reward(self) -> torch.Tensor:
        return self._get(REWARD)

    @property
    def continue_prob(self) -> torch.Tensor:
        return self._get(CONTINUE)

    def validate(self) -> ModelOutput:
        """Check value ranges (syncs with the device; for tests and debugging)."""
        if CONTINUE in self.predictions:
            c = self.predictions[CONTINUE]
            if bool(((c < 0) | (c > 1)).any()):
                raise ContractError(
                    "ModelOutput.continue: expected probabilities in [0, 1], got values in "
                    f"[{float(c.min())}, {float(c.max())}] (logits instead of probabilities?)."
                )
        return self


@dataclass
class Trajectory:
    """An imagined rollout, time-major.

    Attributes:
        states: State whose tensors are ``[T + 1, B, ...]``: the initial state then one per step.
        actions: ``[T, B, A]`` actions taken.
        predictions: ``{key: [T, B, ...]}`` decoded predictions after each action
            (``predictions["reward"][t]`` is the reward for ``actions[t]``).
        uncertainty: ``[T, B]`` or None.
    """

    states: State
    actions: torch.Tensor
    predictions: dict[str, torch.Tensor]
    uncertainty: torch.Tensor | None = None

    def __post_init__(self) -> None:
        dims: dict[str, int] = {}
        check_shape("Trajectory", "actions", self.actions, ("T", "B", "A"), dims)
        for key, value in self.states.tensors.items():
            check_shape("Trajectory", f"states[{key!r}]", value, ("T+1", "B", "*"), dims)
        for key, value in self.predictions.items():
            check_shape("Trajectory", f"predictions[{key!r}]", value, ("T", "B", "*"), dims)
        if self.uncertainty is not None:
            check_shape("Trajectory", "uncertainty", self.uncertainty, ("T", "B"), dims)

    @property
    def horizon(self) -> int:
        return int(self.actions.shape[0])

    @property
    def batch_size(self) -> int:
        return int(self.actions.shape[1])

    def _get(self, key: str) -> torch.Tensor:
        try:
            return self.predictions[key]
        except KeyError:
            raise ContractError(
                f"Trajectory has no {key!r} predictions; it has {sorted(self.predictions)}."
            ) from None

    @property
    def obs(self) -> torch.Tensor:
        return self._get(OBS)

    @property
    def rewards(self) -> torch.Tensor:
        return self._get(REWARD)

    @property
    def continues(self) -> torch.Tensor:
        return self._get(CONTINUE)


@dataclass
class Batch:
    """A training batch of sequences, batch-first, in the library's time alignment.

    Attributes:
        obs: ``[B, T + 1, *O]`` float (uint8 allowed for images).
        actions: ``[B, T, A]`` float (one-hot for discrete actions).
        rewards: ``[B, T]`` float; ``rewards[:, t]`` is for ``actions[:, t]`` in ``obs[:, t]``.
        terminations: ``[B, T]`` bool or float in {0, 1}: the episode ended after ``actions[:, t]``.
        truncations: ``[B, T]`` bool or float in {0, 1}: the episode was cut (time limit) after
            ``actions[:, t]``; never a learning target for ``continue``.
        mask: ``[B, T]`` float or bool, 1 where step t is real data, 0 for padding.
            None means every step is real.
    """

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    terminations: torch.Tensor
    truncations: torch.Tensor
    mask: torch.Tensor | None = None

    def __post_init__(self) -> None:
        dims: dict[str, int] = {}
        check_shape("Batch", "actions", self.actions, ("B", "T", "A"), dims)
        check_floating("Batch", "actions", self.actions)
        check_shape("Batch", "obs", self.obs, ("B", "T+1", "*"), dims)
        if self.obs.dtype != torch.uint8:
            check_floating("Batch", "obs", self.obs)
        check_shape("Batch", "rewards", self.rewards, ("B", "T"), dims)
        check_floating("Batch", "rewards", self.rewards)
        for key in ("terminations", "truncations", "mask"):
            value = getattr(self, key)
            if value is None:
                continue
            check_shape("Batch", key, value, ("B", "T"), dims)
            if not (value.dtype == torch.bool or value.is_floating_point()):
                raise ContractError(
                    f"Batch.{key}: expected a bool or float tensor, got dtype {value.dtype}."
                )

    @property
    def batch_size(self) -> int:
        return int(self.actions.shape[0])

    @property
    def seq_len(self) -> int:
        """T, the number of transitions per sequence."""
        return int(self.actions.shape[1])

    @property
    def continues(self) -> torch.Tensor:
        """``[B, T]`` float continue target: ``1 - terminations``."""
        return 1.0 - self.terminations.to(self.rewards.dtype)

    @property
    def valid(self) -> torch.Tensor:
        """``[B, T]`` float mask of real steps (all ones when ``mask`` is None)."""
        if self.mask is None:
            return torch.ones_like(self.rewards)
        return self.mask.to(self.rewards.dtype)

    def validate(self, obs_shape: tuple[int, ...], action_dim: int) -> Batch:
        """Check the trailing observation shape and the action dimension against a model's."""
        _check_obs_shape("Batch", "obs", self.obs, 2, obs_shape)
        if self.actions.shape[-1] != action_dim:
            raise ContractError(
                f"Batch.actions: expected shape [B, T, A={action_dim}], "
                f"got {list(self.actions.shape)}."
            )
        return self

    def to(self, device: torch.device | str) -> Batch:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=True)

        return Batch(
            obs=self.obs.to(device, non_blocking=True),
            actions=self.actions.to(device, non_blocking=True),
            rewards=self.rewards.to(device, non_blocking=True),
            terminations=self.terminations.to(device, non_blocking=True),
            truncations=self.truncations.to(device, non_blocking=True),
            mask=move(self.mask),
        )


@dataclass
class LossOutput:
    """What :meth:`WorldModel.loss` returns.

    Attributes:
        loss: 0-dim tensor to minimise.
        components: named 0-dim tensors that make up ``loss`` (e.g. ``{"kl": ..., "recon": ...}``).
        metrics: extra floats to log (no gradients).
    """

    loss: torch.Tensor
    components: dict[str, torch.Tensor] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.loss, torch.Tensor) or self.loss.dim() != 0:
            shape = list(self.loss.shape) if isinstance(self.loss, torch.Tensor) else None
            raise ContractError(
                f"LossOutput.loss: expected a 0-dim tensor, got "
                f"{type(self.loss).__name__} with shape {shape}."
            )
        for key, value in self.components.items():
            if not isinstance(value, torch.Tensor) or value.dim() != 0:
                raise ContractError(
                    f"LossOutput.components[{key!r}]: expected a 0-dim tensor, got {value!r}."
                )


def action_tensor(action: ActionPayload | torch.Tensor) -> torch.Tensor:
    """The ``[B, A]`` tensor of an action given as a payload or a bare tensor."""
    return ActionPayload.coerce(action).tensor


__all__ = [
    "CONTINUE",
    "OBS",
    "REWARD",
    "ActionPayload",
    "Batch",
    "ConditionPayload",
    "LossOutput",
    "ModelOutput",
    "State",
    "Trajectory",
    "WorldModelInput",
    "action_tensor",
]
