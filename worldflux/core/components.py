"""The five pluggable layers of a world model and how overrides are resolved.

Every family builds its parts through these roles, so an override given to
``create_world_model(..., component_overrides={role: spec})`` replaces the one object that both
``loss()`` and the rollout path call:

============================  ===========================================================
role                          contract (``forward`` of an ``nn.Module`` unless noted)
============================  ===========================================================
``observation_encoder``       ``obs [B, *O] -> embedding [B, E]``
``action_conditioner``        ``(action [B, A], conditions | None) -> features [B, C]``
``dynamics_model``            ``(state, features [B, C], *, deterministic, noise) -> State``
``decoder``                   ``state -> ModelOutput``
``rollout_executor``          ``run(model, initial_state, actions [T, B, A], *, conditions,
                              deterministic, noise) -> Trajectory`` (plain object, no weights)
============================  ===========================================================

A component class is constructed as ``cls(config)`` from the model's config (its sizes come from
there). A spec is a registered component name, an import path ``"pkg.module:Class"``, a class, or
an already-built instance.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import nn

from .errors import ConfigError, ContractError, RegistryError, unknown_name_message
from .payloads import ConditionPayload, ModelOutput, Trajectory
from .state import State

if TYPE_CHECKING:
    from .config import WorldModelConfig
    from .model import WorldModel


@runtime_checkable
class ObservationEncoder(Protocol):
    """Maps observations ``[B, *O]`` to embeddings ``[B, E]``."""

    def forward(self, obs: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class ActionConditioner(Protocol):
    """Maps an action ``[B, A]`` (and optional conditions) to dynamics input features ``[B, C]``."""

    def forward(
        self, action: torch.Tensor, conditions: ConditionPayload | None = None
    ) -> torch.Tensor: ...


@runtime_checkable
class DynamicsModel(Protocol):
    """Advances a latent state by one step given conditioned action features ``[B, C]``."""

    def forward(
        self,
        state: State,
        features: torch.Tensor,
        *,
        deterministic: bool = False,
        noise: Mapping[str, torch.Tensor] | None = None,
    ) -> State: ...


@runtime_checkable
class Decoder(Protocol):
    """Decodes a latent state into predictions (values and probabilities)."""

    def forward(self, state: State) -> ModelOutput: ...


@runtime_checkable
class RolloutExecutor(Protocol):
    """Runs a multi-step rollout of a model from an initial state with given actions."""

    def run(
        self,
        model: WorldModel,
        initial_state: State,
        actions: torch.Tensor,
        *,
        conditions: ConditionPayload | None = None,
        deterministic: bool = False,
        noise: Mapping[str, torch.Tensor] | None = None,
    ) -> Trajectory: ...


@dataclass(frozen=True)
class ComponentRole:
    """A pluggable layer: its name, protocol, the method it must have, and whether it has weights."""

    name: str
    protocol: type
    method: str
    neural: bool


ROLES: dict[str, ComponentRole] = {
    r.name: r
    for r in (
        ComponentRole("observation_encoder", ObservationEncoder, "forward", True),
        ComponentRole("action_conditioner", ActionConditioner, "forward", True),
        ComponentRole("dynamics_model", DynamicsModel, "forward", True),
        ComponentRole("decoder", Decoder, "forward", True),
        ComponentRole("rollout_executor", RolloutExecutor, "run", False),
    )
}

ComponentSpec = str | type | object
ComponentFactory = Callable[["WorldModelConfig"], Any]


def get_role(name: str) -> ComponentRole:
    try:
        return ROLES[name]
    except KeyError:
        raise ConfigError(unknown_name_message("component role", name, ROLES)) from None


def _ensure_components() -> None:
    """Register the built-in and plugin components (with the families) before a lookup."""
    from .registry import ensure_families

    ensure_families()


class ComponentRegistry:
    """Named components (built-in or from ``worldflux.components`` plugins)."""

    _entries: ClassVar[dict[str, tuple[str, type]]] = {}
    _staging: ClassVar[dict[str, tuple[str, type]] | None] = None

    @classmethod
    def register(cls, name: str, role: str) -> Callable[[type], type]:
        """Class decorator: make ``name`` usable as ``component_overrides={role: name}``."""
        get_role(role)

        def decorator(component_cls: type) -> type:
            existing = cls._entries.get(name) or (cls._staging or {}).get(name)
            if existing is not None and existing[1] is not component_cls:
                raise RegistryError(
                    f"Component name {name!r} is already registered for {class_path(existing[1])}."
                )
            target = cls._staging if cls._staging is not None else cls._entries
            target[name] = (role, component_cls)
            return component_cls

        return decorator

    @classmethod
    def get(cls, name: str) -> tuple[str, type]:
        """``(role, class)`` of a registered component."""
        _ensure_components()
        try:
            return cls._entries[name]
        except KeyError:
            raise RegistryError(unknown_name_message("component", name, cls._entries)) from None

    @classmethod
    def name_of(cls, component_cls: type) -> str | None:
        _ensure_components()
        for name, (_, registered) in cls._entries.items():
            if registered is component_cls:
                return name
        return None

    @classmethod
    def names(cls) -> dict[str, str]:
        """``{name: role}`` of every registered component."""
        _ensure_components()
        return {name: role for name, (role, _) in sorted(cls._entries.items())}

    @classmethod
    def unregister(cls, name: str) -> None:
        cls.get(name)
        del cls._entries[name]

    @classmethod
    @contextmanager
    def staging(cls) -> Iterator[dict[str, tuple[str, type]]]:
        """Collect registrations made inside the block; publish them with :meth:`commit`."""
        if cls._staging is not None:
            raise RegistryError("ComponentRegistry.staging() cannot be nested.")
        cls._staging = {}
        try:
            yield cls._staging
        finally:
            cls._staging = None

    @classmethod
    def conflicts(cls, staged: Mapping[str, tuple[str, type]]) -> list[str]:
        """Names in ``staged`` that published components already use."""
        return [
            f"component name {name!r} is already used by {class_path(cls._entries[name][1])}"
            for name, (_, component_cls) in staged.items()
            if name in cls._entries and cls._entries[name][1] is not component_cls
        ]

    @classmethod
    def commit(cls, staged: Mapping[str, tuple[str, type]]) -> None:
        problems = cls.conflicts(staged)
        if problems:
            raise RegistryError("; ".join(problems) + ".")
        cls._entries.update(staged)


def import_object(path: str) -> Any:
    """Import ``"pkg.module:Attr"`` (``Attr`` may be dotted)."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"Expected an import path 'package.module:Name', got {path!r}.")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"Cannot import module {module_name!r} from {path!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(
                f"Module {module_name!r} has no attribute {attr!r} ({path!r})."
            ) from None
    return obj


def class_path(cls: type) -> str:
    """``"pkg.module:Class"`` for a class importable by that path."""
    return f"{cls.__module__}:{cls.__qualname__}"


def _check_signature(role: ComponentRole, obj: Any, owner: str) -> None:
    method = getattr(obj, role.method, None)
    if not callable(method):
        raise ContractError(
            f"{owner}: a {role.name} must define {role.method}() per "
            f"{role.protocol.__name__}; {type(obj).__name__} has none."
        )
    expected = inspect.signature(getattr(role.protocol, role.method))
    try:
        given = inspect.signature(method)
    except (TypeError, ValueError):
        return
    required_pos = [
        p
        for p in list(expected.parameters.values())[1:]
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    keywords = [p.name for p in expected.parameters.values() if p.kind is p.KEYWORD_ONLY]
    try:
        given.bind(*([None] * len(required_pos)), **{k: None for k in keywords})
    except TypeError as exc:
        raise ContractError(
            f"{owner}: {type(obj).__name__}.{role.method}{given} does not accept the arguments of "
            f"{role.protocol.__name__}.{role.method}{expected} ({exc})."
        ) from None


def check_component(role_name: str, obj: Any, owner: str = "component_overrides") -> Any:
    """Validate a built component against its role's protocol; return it."""
    role = get_role(role_name)
    where = f"{owner}[{role_name!r}]"
    if role.neural and not isinstance(obj, nn.Module):
        raise ContractError(
            f"{where}: expected a torch.nn.Module implementing {role.protocol.__name__}, "
            f"got {type(obj).__name__}."
        )
    _check_signature(role, obj, where)
    if not isinstance(obj, role.protocol):
        raise ContractError(
            f"{where}: {type(obj).__name__} does not implement {role.protocol.__name__}."
        )
    return obj


def resolve_component_class(
    role_name: str, spec: str | type, *, allow_imports: bool = True
) -> type:
    """Turn a registered name or an import path into a class for ``role_name``."""
    role = get_role(role_name)
    if isinstance(spec, type):
        cls = spec
    elif ":" in spec:
        if not allow_imports:
            raise ConfigError(
                f"component_overrides[{role_name!r}] = {spec!r} would import code named in a file; "
                "register the component (entry-point group 'worldflux.components') or pass "
                "trust_imports=True if you trust its source."
            )
        obj = import_object(spec)
        if not isinstance(obj, type):
            raise ContractError(
                f"component_overrides[{role_name!r}]: {spec!r} is a {type(obj).__name__}, "
                "expected a class."
            )
        cls = obj
    else:
        registered_role, cls = ComponentRegistry.get(spec)
        if registered_role != role_name:
            raise ConfigError(
                f"component_overrides[{role_name!r}]: {spec!r} is registered for role "
                f"{registered_role!r}, not {role_name!r}."
            )
    if role.neural and not issubclass(cls, nn.Module):
        raise ContractError(
            f"component_overrides[{role_name!r}]: expected a torch.nn.Module subclass "
            f"implementing {role.protocol.__name__}, got {cls.__module__}.{cls.__qualname__}."
        )
    return cls


def build_component(
    role_name: str,
    spec: ComponentSpec,
    config: WorldModelConfig,
    *,
    allow_imports: bool = True,
) -> tuple[Any, str]:
    """Build (or accept) the component for ``role_name``; return it and its saveable spec.

    The saveable spec is the registered name when there is one, else ``"module:Class"``.
    """
    if isinstance(spec, str | type):
        cls = resolve_component_class(role_name, spec, allow_imports=allow_imports)
        try:
            obj = cls(config)
        except TypeError as exc:
            raise ContractError(
                f"component_overrides[{role_name!r}]: {cls.__qualname__} must be constructible "
                f"as {cls.__qualname__}(config); calling it failed: {exc}"
            ) from exc
    else:
        obj, cls = spec, type(spec)
    check_component(role_name, obj)
    if isinstance(spec, str) and ":" not in spec:
        return obj, spec
    return obj, ComponentRegistry.name_of(cls) or class_path(cls)
