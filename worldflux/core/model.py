"""`WorldModel`: the contract every family implements, and the default rollout.

Shapes: B = batch, T = horizon, A = action dim, ``*O`` = observation shape. Time alignment and
payloads: see :mod:`worldflux.core.payloads`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from os import PathLike
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from .components import (
    ComponentFactory,
    ComponentSpec,
    build_component,
    check_component,
    get_role,
)
from .config import WorldModelConfig
from .errors import ConfigError, ContractError
from .noise import NoiseSpec, check_noise
from .payloads import (
    ActionPayload,
    Batch,
    ConditionPayload,
    LossOutput,
    ModelOutput,
    Trajectory,
    WorldModelInput,
)
from .shapes import DimSpec, check_shape
from .state import State

M = TypeVar("M", bound="WorldModel")

#: Version of the WorldModel contract (method set and payload layouts); saved with every model.
CONTRACT_VERSION = 1


class AutoregressiveRollout:
    """Default rollout: ``transition`` then ``decode`` for each action, feeding the model's own
    predicted state forward (imagination). Families override it only when they need to."""

    def __init__(self, config: WorldModelConfig | None = None) -> None:
        del config  # no settings; accepted to follow the component constructor contract

    def run(
        self,
        model: WorldModel,
        initial_state: State,
        actions: torch.Tensor,
        *,
        conditions: ConditionPayload | None = None,
        deterministic: bool = False,
        noise: Mapping[str, torch.Tensor] | None = None,
    ) -> Trajectory:
        """Roll out ``actions [T, B, A]`` from ``initial_state``; noise tensors are ``[T, B, ...]``."""
        dims = {"B": initial_state.batch_size, "A": model.config.action_dim}
        check_shape("rollout", "actions", actions, ("T", "B", "A"), dims)
        if noise is not None:
            check_noise(model.noise_spec(), noise, (dims["T"], dims["B"]), owner="rollout.noise")
        states = [initial_state]
        predictions: dict[str, list[torch.Tensor]] = {}
        uncertainties: list[torch.Tensor] = []
        state = initial_state
        for t in range(actions.shape[0]):
            step_noise = None if noise is None else {k: v[t] for k, v in noise.items()}
            state = model.transition(
                state, actions[t], conditions, deterministic=deterministic, noise=step_noise
            )
            out = model.decode(state)
            states.append(state)
            for key, value in out.predictions.items():
                predictions.setdefault(key, []).append(value)
            if out.uncertainty is not None:
                uncertainties.append(out.uncertainty)
        return Trajectory(
            states=State.stack(states),
            actions=actions,
            predictions={k: torch.stack(v) for k, v in predictions.items()},
            uncertainty=torch.stack(uncertainties) if uncertainties else None,
        )


class WorldModel(nn.Module, ABC):
    """Base class of every world-model family.

    A family subclass declares:

    * ``component_defaults``: ``{role: factory(config)}`` for the layers it is built from
      (see :mod:`worldflux.core.components`); ``rollout_executor`` defaults to
      :class:`AutoregressiveRollout`. Each built layer is stored as the attribute named by its
      role, so code reaches it through ``self.<role>`` (or :meth:`component`) everywhere and an
      override reaches ``loss()`` and rollouts alike.
    * the seven methods below, plus :meth:`state_spec` (and :meth:`noise_spec` when stochastic).

    Registration (``@WorldModelRegistry.register(name, ConfigCls)``) sets ``config_class`` and
    ``model_type``.
    """

    config_class: ClassVar[type[WorldModelConfig]] = WorldModelConfig
    model_type: ClassVar[str] = ""
    component_defaults: ClassVar[Mapping[str, ComponentFactory]] = {}

    def __init__(
        self,
        config: WorldModelConfig,
        component_overrides: Mapping[str, ComponentSpec] | None = None,
        *,
        trust_imports: bool = True,
    ) -> None:
        """Build the model's layers from ``config`` and optional ``component_overrides``.

        Args:
            config: an instance of this family's ``config_class`` with ``obs_shape`` and
                ``action_dim`` set.
            component_overrides: ``{role: registered name | "pkg.mod:Class" | class | instance}``.
            trust_imports: allow ``"pkg.mod:Class"`` specs to be imported (False when the specs
                come from a file, see ``from_pretrained``).
        """
        super().__init__()
        if not isinstance(config, self.config_class):
            raise ConfigError(
                f"{type(self).__name__}: expected a {self.config_class.__name__}, "
                f"got {type(config).__name__}."
            )
        config.require_io()
        self.config = config
        #: ``{role: saveable spec}`` of the overridden layers (saved by ``save_pretrained``).
        self.component_specs: dict[str, str] = {}
        defaults: dict[str, ComponentFactory] = dict(self.component_defaults)
        defaults.setdefault("rollout_executor", AutoregressiveRollout)
        overrides = dict(component_overrides or {})
        for role in overrides:
            get_role(role)
            if role not in defaults:
                raise ConfigError(
                    f"{type(self).__name__} has no {role!r} layer to override; "
                    f"its layers are {sorted(defaults)}."
                )
        for role, factory in defaults.items():
            if role in overrides:
                obj, saved = build_component(
                    role, overrides[role], config, allow_imports=trust_imports
                )
                self.component_specs[role] = saved
            else:
                obj = check_component(role, factory(config), owner=f"{type(self).__name__} default")
            setattr(self, role, obj)

    # -- the contract ---------------------------------------------------------------------
    @abstractmethod
    def encode(self, obs: WorldModelInput | torch.Tensor) -> State:
        """Posterior state from a first observation ``[B, *O]`` (no history)."""

    @abstractmethod
    def transition(
        self,
        state: State,
        action: ActionPayload | torch.Tensor,
        conditions: ConditionPayload | None = None,
        deterministic: bool = False,
        noise: Mapping[str, torch.Tensor] | None = None,
    ) -> State:
        """Prior (imagination) step: next state after ``action [B, A]`` without observing.

        Args:
            deterministic: use modes/means instead of samples.
            noise: ``{name: [B, *shape]}`` per :meth:`noise_spec`; None draws from torch's RNG.
        """

    @abstractmethod
    def update(
        self,
        state: State,
        action: ActionPayload | torch.Tensor,
        obs: WorldModelInput | torch.Tensor,
    ) -> State:
        """Posterior (filter) step: next state after ``action [B, A]`` given the observation
        ``[B, *O]`` that followed it."""

    @abstractmethod
    def decode(self, state: State) -> ModelOutput:
        """Predictions for ``state``: ``obs [B, *O]``, ``reward [B]``, ``continue [B]`` (a
        probability), and ``uncertainty [B]`` where the family has one."""

    @abstractmethod
    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """The state before any observation (e.g. zeros), ``batch_size`` rows."""

    @abstractmethod
    def loss(self, batch: Batch) -> LossOutput:
        """Training loss on a :class:`Batch` (``obs [B, T+1, *O]``, ``actions [B, T, A]``, ...)."""

    @abstractmethod
    def state_spec(self) -> dict[str, tuple[DimSpec, ...]]:
        """Per-sample shapes of the state tensors, e.g. ``{"deter": (512,), "stoch": (32, 16)}``."""

    def noise_spec(self) -> dict[str, NoiseSpec]:
        """Noise inputs of :meth:`transition` (empty for deterministic models)."""
        return {}

    def latent_keys(self) -> tuple[str, ...]:
        """State keys whose tensors, flattened and concatenated in this order, are the model's
        latent features: what a policy sees in a dream env's latent-observation mode (for
        families without an observation decoder). Default: every key of :meth:`state_spec`."""
        return tuple(self.state_spec())

    def rollout(
        self,
        initial_state: State,
        actions: torch.Tensor,
        conditions: ConditionPayload | None = None,
        deterministic: bool = False,
        noise: Mapping[str, torch.Tensor] | None = None,
    ) -> Trajectory:
        """Imagine ``actions [T, B, A]`` from ``initial_state``; noise tensors are ``[T, B, ...]``.

        Runs the ``rollout_executor`` layer (default :class:`AutoregressiveRollout`).
        """
        executor = self.component("rollout_executor")
        result: Trajectory = executor.run(
            self,
            initial_state,
            actions,
            conditions=conditions,
            deterministic=deterministic,
            noise=noise,
        )
        return result

    # -- training hooks (used by worldflux.training.Trainer) --------------------------------
    def param_groups(self) -> list[dict[str, Any]]:
        """Optimiser parameter groups. Each dict has ``"params"`` and may set ``"name"``,
        ``"lr_scale"`` (multiplies the trainer's learning rate) and ``"weight_decay"``.
        Default: one group with every trainable parameter."""
        return [{"name": "model", "params": [p for p in self.parameters() if p.requires_grad]}]

    def after_update(self) -> None:
        """Called after every optimiser step (update EMA / target networks here)."""

    def set_data_statistics(self, stats: Mapping[str, Any]) -> None:
        """Receive the training data's normalisation statistics; default: ignore them.

        The Trainer calls it once when it is built (before any step; a resumed run then restores
        the checkpoint's weights and buffers) with its batch provider's ``stats``, e.g.
        ``NormalizationStats.to_dict()``: ``obs_mean``, ``obs_std``, ``delta_mean``,
        ``delta_std`` ``[*O]`` (None for images), ``action_mean``, ``action_std`` ``[A]``,
        ``reward_mean``, ``reward_std`` (floats), as lists or arrays. Families that normalise
        store them in buffers so they are saved with the weights.
        """
        del stats

    def after_evaluation(self, metrics: Mapping[str, float]) -> None:
        """Called after every validation pass with its mean metrics as logged (``val/loss``,
        ``val/<component>``); default: nothing (ensembles select their elites here)."""
        del metrics

    # -- helpers for families ---------------------------------------------------------------
    def component(self, role: str) -> Any:
        """The layer built for ``role`` (default or override)."""
        get_role(role)
        try:
            return getattr(self, role)
        except AttributeError:
            raise ConfigError(f"{type(self).__name__} has no {role!r} layer.") from None

    def check_state(self, state: State) -> State:
        """Validate ``state`` against :meth:`state_spec` (keys and shapes)."""
        if not isinstance(state, State):
            raise ContractError(
                f"{type(self).__name__}: expected a State, got {type(state).__name__}."
            )
        return state.require(self.state_spec(), owner=f"{type(self).__name__} state")

    def check_batch(self, batch: Batch) -> Batch:
        """Validate a training batch against this model's observation shape and action size."""
        if not isinstance(batch, Batch):
            raise ContractError(
                f"{type(self).__name__}.loss: expected a Batch, got {type(batch).__name__}."
            )
        return batch.validate(self.config.obs_shape, self.config.action_dim)

    def check_action(self, action: ActionPayload | torch.Tensor, batch_size: int) -> torch.Tensor:
        """Validate one step of actions ``[B, A]`` and return the tensor."""
        return ActionPayload.coerce(action).validate(self.config.action_dim, batch_size).tensor

    def check_obs(self, obs: WorldModelInput | torch.Tensor) -> WorldModelInput:
        return WorldModelInput.coerce(obs).validate(self.config.obs_shape)

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    # -- persistence ------------------------------------------------------------------------
    def save_pretrained(self, directory: str | PathLike[str]) -> None:
        """Write config, weights and metadata to ``directory`` atomically (see ``serialization``)."""
        from .serialization import save_pretrained

        save_pretrained(self, directory)

    @classmethod
    def from_pretrained(
        cls: type[M],
        directory: str | PathLike[str],
        *,
        device: torch.device | str = "cpu",
        trust_imports: bool = False,
    ) -> M:
        """Load a model saved by :meth:`save_pretrained` (never unpickles).

        On a family class, the directory must hold that family; on ``WorldModel`` any family.
        """
        from .serialization import load_pretrained

        model = load_pretrained(
            directory,
            device=device,
            trust_imports=trust_imports,
            expected_cls=None if cls is WorldModel else cls,
        )
        return model  # type: ignore[return-value]
