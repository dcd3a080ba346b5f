"""`WorldModel`: the contract every family implements, and the default rollout.

Shapes: B = batch, T = horizon, A = action dim, ``*O`` = observation shape. Time alignment and
payloads: see :mod:`worldflux.core.payloads`.
"""

from __future__ import annotations

import functools
import inspect
import types
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from os import PathLike
from typing import Any, ClassVar, TypeVar, cast

import torch
from torch import nn

from .batch_provider import BatchProviderV2
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
    * ``decodes_observations = False`` when ``decode`` gives no ``"obs"`` (decoder-free).

    Registration (``@WorldModelRegistry.register(name, ConfigCls)``) sets ``config_class`` and
    ``model_type``.
    """

    config_class: ClassVar[type[WorldModelConfig]] = WorldModelConfig
    model_type: ClassVar[str] = ""
    component_defaults: ClassVar[Mapping[str, ComponentFactory]] = {}
    #: Whether ``decode`` predicts observations (``"obs"``). Decoder-free families (e.g.
    #: TD-MPC2) set False: their dreams serve latent observations only.
    decodes_observations: ClassVar[bool] = True

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
        self.config = self._checked_config(config)
        self._build_components(config, component_overrides, trust_imports)

    def _checked_config(self, config: WorldModelConfig) -> WorldModelConfig:
        """``config`` if it is this family's config class with ``obs_shape`` and ``action_dim``."""
        if not isinstance(config, self.config_class):
            raise ConfigError(
                f"{type(self).__name__}: expected a {self.config_class.__name__}, "
                f"got {type(config).__name__}."
            )
        config.require_io()
        return config

    def _build_components(
        self,
        config: WorldModelConfig,
        component_overrides: Mapping[str, ComponentSpec] | None,
        trust_imports: bool,
    ) -> None:
        """Build every layer of ``component_defaults`` (and the rollout executor), overridden
        where ``component_overrides`` says, as attributes named by their roles."""
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

    def upgrade_weights(self, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Weights (a state dict) saved by an earlier version of the family, in this version's
        layout; ``load_pretrained`` and the Trainer's resume call it before loading. Default:
        unchanged."""
        return weights

    def after_training(
        self, data: BatchProviderV2, *, seed: int, validation: bool
    ) -> dict[str, float]:
        """Called once when the Trainer's steps end (after the last step, before the final
        evaluation and checkpoint; not again when a finished run is resumed) with its batch
        provider, the run's seed and whether ``data`` has validation batches. Families fit here
        what describes the trained model (the RSSM's error heads), on the model's device.
        Returns metrics for the run's results; default: nothing."""
        del data, seed, validation
        return {}

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


# -- families written as plain nn.Modules --------------------------------------------------------
#: Methods a family written as a plain ``nn.Module`` must define itself.
REQUIRED_METHODS = ("encode", "transition", "update", "decode", "loss")
#: Methods such a family may define; :class:`ModuleWorldModel` supplies them otherwise.
DEFAULTED_METHODS = ("rollout", "initial_state", "state_spec", "noise_spec", "latent_keys")
#: Optional arguments of the contract that a family's method may leave out.
OPTIONAL_KEYWORDS: dict[str, tuple[str, ...]] = {
    "transition": ("conditions", "deterministic", "noise"),
    "rollout": ("conditions", "deterministic", "noise"),
}
_ADAPTED: dict[type, type[WorldModel]] = {}


class ModuleWorldModel(WorldModel):
    """What a family written as a plain ``nn.Module`` gets from :func:`adapt_module`.

    The family class defines ``__init__(self, config)`` (calling ``super().__init__()``) and
    the methods of :data:`REQUIRED_METHODS`; the adapted class derives from it and from this
    class, so it is a :class:`WorldModel` with ``save_pretrained`` / ``from_pretrained``, the
    config checks, the training hooks and these defaults:

    * ``rollout``: the autoregressive rollout (``transition`` then ``decode`` per action);
    * ``state_spec``: the per-sample shapes of the state ``encode`` returns for a batch of zero
      observations (computed once, in eval mode, without gradients);
    * ``initial_state``: zeros of those shapes; ``noise_spec``: none (deterministic).

    A ``transition`` or ``rollout`` without the contract's ``conditions`` / ``deterministic`` /
    ``noise`` parameters is called without them: ``deterministic`` is dropped, while
    ``conditions`` or a non-empty ``noise`` raise :class:`ContractError` (they carry data the
    method would ignore).
    """

    #: The family's own class (the one that was registered).
    adapted_from: ClassVar[type[nn.Module]] = nn.Module

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Reached through the family's own ``super().__init__()``: set up the ``nn.Module``."""
        nn.Module.__init__(self, *args, **kwargs)

    def _adapted_init(
        self,
        config: WorldModelConfig,
        component_overrides: Mapping[str, ComponentSpec] | None = None,
        *,
        trust_imports: bool = True,
    ) -> None:
        """``__init__`` of an adapted class: the WorldModel signature around the family's own
        ``__init__(config)``."""
        config = self._checked_config(config)
        family_init = self.adapted_from.__init__
        if family_init is nn.Module.__init__:
            nn.Module.__init__(self)
        else:
            family_init(self, config)
        if "_modules" not in self.__dict__:
            raise ContractError(
                f"{type(self).__name__}.__init__ must call super().__init__() first (as every "
                "nn.Module does); it did not."
            )
        if "config" not in self.__dict__:
            self.config = config
        self._build_components(config, component_overrides, trust_imports)

    def state_spec(self) -> dict[str, tuple[DimSpec, ...]]:
        """Default: per-sample shapes of ``encode``'s state for zero observations (cached)."""
        spec: dict[str, tuple[DimSpec, ...]] | None = self.__dict__.get("_inferred_state_spec")
        if spec is None:
            spec = self._infer_state_spec()
            self.__dict__["_inferred_state_spec"] = spec
        return dict(spec)

    def _infer_state_spec(self) -> dict[str, tuple[DimSpec, ...]]:
        obs = torch.zeros(2, *self.config.obs_shape, device=self.device)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                state = self.encode(obs)
        finally:
            self.train(was_training)
        if not isinstance(state, State):
            raise ContractError(
                f"{type(self).__name__}.encode: expected a State, got {type(state).__name__}."
            )
        return {key: tuple(value.shape[1:]) for key, value in state.tensors.items()}

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """Default: zeros of the :meth:`state_spec` shapes."""
        sizes = {k: v for k, v in self.state_spec().items() if all(isinstance(d, int) for d in v)}
        symbolic = {k: v for k, v in self.state_spec().items() if k not in sizes}
        if symbolic:
            raise ContractError(
                f"{type(self).__name__}.initial_state: the default needs a state_spec of "
                f"integer sizes, got {symbolic}; define initial_state(batch_size, device=None)."
            )
        where = self.device if device is None else device
        return State(
            {k: torch.zeros(batch_size, *map(int, v), device=where) for k, v in sizes.items()}
        )


def contract_problems(module_cls: type) -> list[str]:
    """Why ``module_cls`` cannot be used as a world-model family written as a plain
    ``nn.Module`` (empty when it can)."""
    if not (isinstance(module_cls, type) and issubclass(module_cls, nn.Module)):
        return [f"it is not an nn.Module subclass (got {module_cls!r})"]
    problems = []
    missing = [m for m in REQUIRED_METHODS if not callable(getattr(module_cls, m, None))]
    if missing:
        problems.append(f"it does not define {', '.join(missing)}")
    if module_cls.__init__ is not nn.Module.__init__:
        signature = inspect.signature(module_cls.__init__)
        try:
            signature.bind(None, None)
        except TypeError:
            problems.append(f"its __init__ must take the config alone, got __init__{signature}")
    return problems


def adapt_module(module_cls: type[nn.Module]) -> type[WorldModel]:
    """A :class:`WorldModel` subclass of ``module_cls`` (a family written as a plain
    ``nn.Module``; see :class:`ModuleWorldModel` for what it gains). Adapting the same class twice
    returns the same adapted class.

    Raises:
        ContractError: ``module_cls`` lacks methods of :data:`REQUIRED_METHODS` or its
            ``__init__`` does not take the config alone.
    """
    cached = _ADAPTED.get(module_cls)
    if cached is not None:
        return cached
    problems = contract_problems(module_cls)
    if problems:
        raise ContractError(
            f"{getattr(module_cls, '__name__', module_cls)!r} does not implement the WorldModel "
            f"contract: {'; '.join(problems)}. Expected methods {list(REQUIRED_METHODS)} "
            f"(optional: {list(DEFAULTED_METHODS)})."
        )
    namespace: dict[str, Any] = {
        "__module__": module_cls.__module__,
        "__qualname__": module_cls.__qualname__,
        "__doc__": module_cls.__doc__,
        "__init__": ModuleWorldModel._adapted_init,
        "adapted_from": module_cls,
    }
    for name in OPTIONAL_KEYWORDS:
        wrapper = _keyword_adapter(module_cls, name)
        if wrapper is not None:
            namespace[name] = wrapper
    adapted = cast(
        "type[WorldModel]",
        types.new_class(
            module_cls.__name__,
            (module_cls, ModuleWorldModel),
            exec_body=lambda ns: ns.update(namespace),
        ),
    )
    _ADAPTED[module_cls] = adapted
    return adapted


def _keyword_adapter(module_cls: type, name: str) -> Callable[..., Any] | None:
    """A wrapper calling ``module_cls.<name>`` without the contract's optional keywords it does
    not take (None when it takes them all, or ``**kwargs``, or does not define the method)."""
    method = getattr(module_cls, name, None)
    if method is None:
        return None
    params = inspect.signature(method).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    dropped = [k for k in OPTIONAL_KEYWORDS[name] if k not in params]
    if not dropped:
        return None
    contract = inspect.signature(getattr(WorldModel, name))
    required = [
        p.name
        for p in list(contract.parameters.values())[1:]
        if p.default is inspect.Parameter.empty
    ]

    @functools.wraps(method)
    def adapted(self: WorldModel, *args: Any, **kwargs: Any) -> Any:
        extra = {k: kwargs.pop(k) for k in list(kwargs) if k not in contract.parameters}
        values = dict(contract.bind(self, *args, **kwargs).arguments)
        del values["self"]
        for key in dropped:
            value = values.pop(key, None)
            if key != "deterministic" and value is not None and not _empty_mapping(value):
                raise ContractError(
                    f"{type(self).__name__}.{name} takes no {key!r} argument, got {key}="
                    f"{_describe(value)}; add the parameter to use it."
                )
        positional = [values.pop(p) for p in required]
        return method(self, *positional, **values, **extra)

    adapted.__signature__ = contract  # type: ignore[attr-defined]  # what it accepts
    return adapted


def _empty_mapping(value: Any) -> bool:
    return isinstance(value, Mapping) and not value


def _describe(value: Any) -> str:
    """A short description of an argument (keys, not tensors)."""
    if isinstance(value, Mapping):
        return f"a {type(value).__name__} with keys {sorted(value)}"
    return f"a {type(value).__name__}"
