"""`WorldModelConfig`: the dataclass every family's configuration derives from.

A family subclasses it, adds its hyperparameters as typed fields with defaults, and may declare
size presets::

    @dataclass
    class MyConfig(WorldModelConfig):
        hidden: int = 256
        presets: ClassVar[dict[str, dict[str, Any]]] = {"tiny": {"hidden": 32}}

Unknown fields are rejected with a "did you mean" hint; values are type-checked (floats must be
finite: no NaN or infinity), and JSON lists are turned back into tuples, so a config survives a
JSON round trip unchanged.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin

from .errors import ConfigError, unknown_name_message

C = TypeVar("C", bound="WorldModelConfig")


@dataclass
class WorldModelConfig:
    """Base configuration: the observation shape and action size every model needs.

    Attributes:
        obs_shape: per-sample observation shape, e.g. ``(17,)`` or ``(3, 64, 64)`` (CHW).
        action_dim: action vector size (number of choices for discrete actions, one-hot).
    """

    obs_shape: tuple[int, ...] = ()
    action_dim: int = 0

    #: Registered family name; set by ``WorldModelRegistry.register``.
    model_type: ClassVar[str] = ""
    #: Size presets: preset name -> field overrides.
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    #: Preset used for ``create_world_model("family")`` without ``:preset`` (None: defaults).
    default_preset: ClassVar[str | None] = None
    #: Values for fields added after models of this family were first saved: a saved config
    #: without such a field was written before it existed and loads with the value that
    #: reproduces the saved model (new configs take the field's default).
    saved_defaults: ClassVar[dict[str, Any]] = {}

    def __post_init__(self) -> None:
        for name, hint in _field_hints(type(self)).items():
            setattr(self, name, _coerce(type(self).__name__, name, hint, getattr(self, name)))
        self.validate()

    def validate(self) -> None:
        """Check value ranges. Subclasses extend this (call ``super().validate()``)."""
        if self.obs_shape and any(d <= 0 for d in self.obs_shape):
            raise ConfigError(
                f"{type(self).__name__}.obs_shape: expected positive sizes, got {self.obs_shape}."
            )
        if self.action_dim < 0:
            raise ConfigError(
                f"{type(self).__name__}.action_dim: expected >= 1, got {self.action_dim}."
            )

    def require_io(self) -> None:
        """Raise unless ``obs_shape`` and ``action_dim`` are set (a buildable config)."""
        if not self.obs_shape or self.action_dim <= 0:
            raise ConfigError(
                f"{type(self).__name__}: obs_shape and action_dim must be given to build a model, "
                f"got obs_shape={self.obs_shape}, action_dim={self.action_dim}."
            )

    # -- (de)serialisation ------------------------------------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.init]

    @classmethod
    def check_keys(cls, keys: typing.Iterable[str], *, what: str = "field") -> None:
        """Reject names that are not fields of this config, with a did-you-mean hint."""
        known = cls.field_names()
        for key in keys:
            if key not in known:
                raise ConfigError(unknown_name_message(f"{cls.__name__} {what}", key, known))

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
        """Build from a mapping; unknown keys raise :class:`ConfigError` naming the closest field."""
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"{cls.__name__}.from_dict: expected a mapping, got {type(data).__name__}."
            )
        cls.check_keys(data)
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return {f: _jsonable(getattr(self, f)) for f in self.field_names()}

    def replace(self: C, **changes: Any) -> C:
        """A copy with ``changes`` applied (validated like ``from_dict``)."""
        merged = self.to_dict()
        type(self).check_keys(changes)
        merged.update(changes)
        return type(self).from_dict(merged)


def _field_hints(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _coerce(owner: str, name: str, hint: Any, value: Any) -> Any:
    """Check ``value`` against the type ``hint``; convert JSON lists to tuples where declared."""
    origin = get_origin(hint)
    args = get_args(hint)

    def fail() -> ConfigError:
        shown = getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
        return ConfigError(
            f"{owner}.{name}: expected {shown}, got {value!r} ({type(value).__name__})."
        )

    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        for option in args:
            try:
                return _coerce(owner, name, option, value)
            except ConfigError:
                continue
        raise fail()
    if hint is type(None):
        if value is None:
            return None
        raise fail()
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{owner}.{name}: expected one of {list(args)}, got {value!r}.")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise fail()
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise fail()
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:  # an int too large for a float
                number = math.inf
            if not math.isfinite(number):  # NaN slips through range checks (nan < 0 is False)
                raise ConfigError(f"{owner}.{name}: expected a finite number, got {value!r}.")
            return number
        raise fail()
    if hint is str:
        if isinstance(value, str):
            return value
        raise fail()
    if origin is tuple:
        if not isinstance(value, tuple | list):
            raise fail()
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(owner, name, args[0], v) for v in value)
        if len(args) != len(value):
            raise fail()
        return tuple(_coerce(owner, name, a, v) for a, v in zip(args, value, strict=True))
    if origin is list:
        if not isinstance(value, tuple | list):
            raise fail()
        return [_coerce(owner, name, args[0], v) for v in value] if args else list(value)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise fail()
        return dict(value)
    return value
