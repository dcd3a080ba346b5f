"""Family registry and the `create_world_model` factory.

    @WorldModelRegistry.register("dreamerv3", DreamerV3Config, aliases=("dreamer",))
    class DreamerV3(WorldModel): ...

    model = create_world_model("dreamerv3:small", obs_shape=(17,), action_dim=6, hidden=512)

A spec is ``"family"`` (the family's default preset), ``"family:preset"``, or the path of a
directory written by ``save_pretrained``.

A family may also be written as a plain ``nn.Module`` that defines ``__init__(self, config)`` and
the contract's methods (``encode``, ``transition``, ``update``, ``decode``, ``loss``; optionally
``rollout``, ``initial_state``, ``state_spec``); registration then returns a :class:`WorldModel`
subclass of it (see :class:`~worldflux.core.model.ModuleWorldModel`), so it builds, trains, saves
and loads like any family.

The built-in families (:mod:`worldflux.models`) and the plugins' families register on the first
lookup (:meth:`WorldModelRegistry.get`, :meth:`~WorldModelRegistry.families`, or a
:meth:`~WorldModelRegistry.register` outside :mod:`worldflux.models`), not on ``import worldflux``,
which does not load torch.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar, cast

import torch
from torch import nn

from .components import ComponentSpec
from .config import WorldModelConfig
from .errors import ConfigError, RegistryError, unknown_name_message
from .model import DEFAULTED_METHODS, REQUIRED_METHODS, WorldModel, adapt_module, contract_problems

W = TypeVar("W", bound=type[nn.Module])


@dataclass(frozen=True)
class FamilyEntry:
    """A registered family: its model class, config class, aliases and where it came from."""

    name: str
    model_cls: type[WorldModel]
    config_cls: type[WorldModelConfig]
    aliases: tuple[str, ...] = ()
    source: str = "worldflux"

    @property
    def presets(self) -> dict[str, dict[str, Any]]:
        return dict(self.config_cls.presets)


@dataclass
class _Staging:
    families: dict[str, FamilyEntry] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    source: str = ""


_BUILTIN_FAMILIES = "worldflux.models"
_plugins_loaded = False


def ensure_builtin_families() -> None:
    """Register the built-in families (import :mod:`worldflux.models`; a no-op once done, and
    while that import runs)."""
    importlib.import_module(_BUILTIN_FAMILIES)


def ensure_families() -> None:
    """Register the built-in families, then load the entry-point plugins, once per process
    (:func:`worldflux.core.plugins.load_plugins` loads plugins installed later)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from .plugins import load_plugins

    load_plugins()  # registers the built-in families first


class WorldModelRegistry:
    """Global table of world-model families (built-in and plugin), filled on first lookup."""

    _families: ClassVar[dict[str, FamilyEntry]] = {}
    _aliases: ClassVar[dict[str, str]] = {}
    _staging: ClassVar[_Staging | None] = None

    @classmethod
    def register(
        cls,
        name: str,
        config_cls: type[WorldModelConfig],
        *,
        aliases: tuple[str, ...] | list[str] = (),
    ) -> Callable[[W], W]:
        """Class decorator registering a world-model family under ``name``.

        The class is a :class:`WorldModel` subclass, or a plain ``nn.Module`` implementing the
        contract (see the module docstring), which is adapted: the decorator then returns the
        adapted :class:`WorldModel` subclass of it.

        Raises:
            RegistryError: ``config_cls`` is not a :class:`WorldModelConfig`, the class is neither
                kind (the message names the missing methods), or a name is taken.
        """
        if not (isinstance(config_cls, type) and issubclass(config_cls, WorldModelConfig)):
            raise RegistryError(
                f"register({name!r}): config class must derive from WorldModelConfig, "
                f"got {config_cls!r}."
            )

        def decorator(model_cls: W) -> W:
            family_cls = cls._family_class(name, model_cls)
            staged = cls._staging
            if staged is None:  # a user's family: name clashes with built-ins are found now
                ensure_builtin_families()
            for taken in (name, *aliases):
                owner = cls._owner(taken, staged)
                if owner is not None and owner.model_cls is not family_cls:
                    raise RegistryError(
                        f"register({name!r}): name {taken!r} is already used by family "
                        f"{owner.name!r} ({owner.source})."
                    )
            source = staged.source if staged is not None else family_cls.__module__
            entry = FamilyEntry(name, family_cls, config_cls, tuple(aliases), source)
            if staged is not None:  # published (and the classes tagged) only on commit
                staged.families[name] = entry
                staged.aliases.update({alias: name for alias in aliases})
            else:
                cls._publish({name: entry}, {alias: name for alias in aliases})
            return cast(W, family_cls)

        return decorator

    @staticmethod
    def _family_class(name: str, model_cls: Any) -> type[WorldModel]:
        """``model_cls`` itself when it is a :class:`WorldModel` subclass, its adapted class when
        it is a plain ``nn.Module`` implementing the contract; otherwise a RegistryError that
        says what is missing."""
        if isinstance(model_cls, type) and issubclass(model_cls, WorldModel):
            return model_cls
        problems = contract_problems(model_cls)
        if problems:
            shown = model_cls.__name__ if isinstance(model_cls, type) else repr(model_cls)
            raise RegistryError(
                f"register({name!r}): expected a WorldModel subclass, or an nn.Module subclass "
                f"implementing the WorldModel contract (methods {list(REQUIRED_METHODS)}; "
                f"optional {list(DEFAULTED_METHODS)}; __init__(self, config)), got {shown}: "
                f"{'; '.join(problems)}."
            )
        return adapt_module(model_cls)

    @classmethod
    def _owner(cls, name: str, staged: _Staging | None = None) -> FamilyEntry | None:
        """The family that holds ``name`` (as name or alias), published or staged."""
        tables = [(cls._families, cls._aliases)]
        if staged is not None:
            tables.append((staged.families, staged.aliases))
        for families, aliases in tables:
            key = name if name in families else aliases.get(name)
            if key is not None:
                return families[key]
        return None

    @classmethod
    def get(cls, name: str) -> FamilyEntry:
        """The family registered as ``name`` or an alias of it."""
        ensure_families()
        entry = cls._owner(name)
        if entry is None:
            raise RegistryError(
                unknown_name_message("world-model family", name, [*cls._families, *cls._aliases])
            )
        return entry

    @classmethod
    def families(cls) -> dict[str, FamilyEntry]:
        """Every registered family by name."""
        ensure_families()
        return dict(sorted(cls._families.items()))

    @classmethod
    def unregister(cls, name: str) -> None:
        """Remove a family and its aliases (for tests and plugin reloads)."""
        entry = cls.get(name)
        del cls._families[entry.name]
        for alias in entry.aliases:
            cls._aliases.pop(alias, None)

    @classmethod
    @contextmanager
    def staging(cls, source: str) -> Iterator[_Staging]:
        """Collect the families registered inside the block without publishing them; publish
        them with :meth:`commit` once they pass the caller's checks (used for plugins)."""
        if cls._staging is not None:
            raise RegistryError("WorldModelRegistry.staging() cannot be nested.")
        cls._staging = _Staging(source=source)
        try:
            yield cls._staging
        finally:
            cls._staging = None

    @classmethod
    def conflicts(cls, staged: _Staging) -> list[str]:
        """Names in ``staged`` that published families already use."""
        named = [*staged.families.items()]
        named += [(alias, staged.families[family]) for alias, family in staged.aliases.items()]
        found = []
        for name, mine in named:
            owner = cls._owner(name)
            # the same class under the same family name (e.g. one hook listed in both entry-point
            # groups) is a repeat, not a conflict
            if owner is not None and (owner.model_cls, owner.name) != (mine.model_cls, mine.name):
                found.append(
                    f"family name {name!r} is already used by {owner.name!r} ({owner.source})"
                )
        return found

    @classmethod
    def commit(cls, staged: _Staging) -> None:
        """Publish what :meth:`staging` collected (all or nothing)."""
        problems = cls.conflicts(staged)
        if problems:
            raise RegistryError("; ".join(problems) + ".")
        fresh = {n: e for n, e in staged.families.items() if cls._owner(n) is None}
        cls._publish(fresh, {a: f for a, f in staged.aliases.items() if cls._owner(a) is None})

    @classmethod
    def _publish(cls, families: Mapping[str, FamilyEntry], aliases: Mapping[str, str]) -> None:
        for entry in families.values():
            entry.model_cls.config_class = entry.config_cls
            entry.model_cls.model_type = entry.name
            entry.config_cls.model_type = entry.name
        cls._families.update(families)
        cls._aliases.update(aliases)


def parse_spec(spec: str) -> tuple[FamilyEntry, str | None]:
    """``"family[:preset]"`` -> (family entry, preset or the family's default preset)."""
    name, sep, preset = spec.partition(":")
    entry = WorldModelRegistry.get(name.strip())
    if not sep:
        return entry, entry.config_cls.default_preset
    preset = preset.strip()
    if preset not in entry.config_cls.presets:
        raise RegistryError(
            unknown_name_message(
                f"preset of family {entry.name!r}", preset, entry.config_cls.presets
            )
        )
    return entry, preset


def build_config(
    entry: FamilyEntry, preset: str | None, overrides: Mapping[str, Any]
) -> WorldModelConfig:
    """Config = class defaults <- preset values <- ``overrides`` (each name checked)."""
    entry.config_cls.check_keys(overrides, what="argument")
    values: dict[str, Any] = {}
    if preset is not None:
        values.update(entry.config_cls.presets[preset])
    values.update(overrides)
    return entry.config_cls.from_dict(values)


def create_world_model(
    spec: str | os.PathLike[str],
    *,
    component_overrides: Mapping[str, ComponentSpec] | None = None,
    device: torch.device | str = "cpu",
    **overrides: Any,
) -> WorldModel:
    """Create a world model from ``"family[:preset]"`` or load one from a saved directory.

    Args:
        spec: family name or alias, optionally ``":preset"``; or a ``save_pretrained`` directory.
        component_overrides: ``{role: registered name | "pkg.mod:Class" | class | instance}``.
        device: where the parameters go.
        **overrides: config fields, at least ``obs_shape`` and ``action_dim`` for a new model.

    Raises:
        RegistryError: unknown family or preset (with the closest name).
        ConfigError: unknown or ill-typed config fields (with the closest name).
    """
    path = Path(spec)
    if isinstance(spec, os.PathLike) or path.is_dir():
        if overrides or component_overrides:
            given = sorted([*overrides, *(["component_overrides"] if component_overrides else [])])
            raise ConfigError(
                f"create_world_model({str(spec)!r}) loads a saved model; it takes no config "
                f"overrides, got {given}."
            )
        from .serialization import load_pretrained

        return load_pretrained(path, device=device)
    entry, preset = parse_spec(str(spec))
    config = build_config(entry, preset, overrides)
    model = entry.model_cls(config, component_overrides=component_overrides)
    return model.to(device)
