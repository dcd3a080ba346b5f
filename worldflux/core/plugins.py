"""Third-party families and components through entry points.

A distribution declares, in its ``pyproject.toml``::

    [project.entry-points."worldflux.models"]
    my_family = "my_pkg.plugin:register"

``register`` is a callable with no arguments. It (or the import of its module) registers families
with ``@WorldModelRegistry.register`` and components with ``@ComponentRegistry.register``, and it
returns a manifest::

    {"plugin_api_version": 1, "worldflux_version_range": ">=0.1,<0.2",
     "capabilities": ["world_model"]}

Registrations are staged while the plugin loads and published only when the manifest is
compatible. An incompatible plugin is skipped with a :class:`PluginWarning` naming both versions;
a plugin that raises is skipped with a warning too, and ``import worldflux`` still works.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Literal

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from .._version import __version__
from .components import ComponentRegistry
from .errors import PluginError
from .registry import WorldModelRegistry

#: Version of the plugin interface (manifest fields and registration hooks).
PLUGIN_API_VERSION = 1
ENTRY_POINT_GROUPS = ("worldflux.models", "worldflux.components")


class PluginWarning(UserWarning):
    """A plugin was skipped (incompatible, broken, or in conflict with a registered name)."""


@dataclass(frozen=True)
class PluginManifest:
    """What a plugin declares about itself.

    Attributes:
        plugin_api_version: the plugin interface it was written for (must equal
            :data:`PLUGIN_API_VERSION`).
        worldflux_version_range: PEP 440 specifier of the worldflux versions it supports.
        capabilities: free-form tags, e.g. ``["world_model", "image_obs"]``.
    """

    plugin_api_version: int
    worldflux_version_range: str
    capabilities: tuple[str, ...] = ()

    @classmethod
    def parse(cls, obj: Any) -> PluginManifest:
        if isinstance(obj, PluginManifest):
            return obj
        if not isinstance(obj, Mapping):
            raise PluginError(
                f"expected the plugin to return a manifest mapping, got {type(obj).__name__}."
            )
        missing = [k for k in ("plugin_api_version", "worldflux_version_range") if k not in obj]
        if missing:
            raise PluginError(f"manifest is missing {missing}; it has {sorted(obj)}.")
        api = obj["plugin_api_version"]
        if not isinstance(api, int) or isinstance(api, bool):
            raise PluginError(f"manifest plugin_api_version: expected an int, got {api!r}.")
        spec = obj["worldflux_version_range"]
        try:
            SpecifierSet(spec)
        except (InvalidSpecifier, TypeError):
            raise PluginError(
                f"manifest worldflux_version_range: expected a PEP 440 specifier such as "
                f"'>=0.1,<0.2', got {spec!r}."
            ) from None
        caps = obj.get("capabilities", ())
        if isinstance(caps, str) or not all(isinstance(c, str) for c in caps):
            raise PluginError(f"manifest capabilities: expected a list of strings, got {caps!r}.")
        return cls(api, spec, tuple(caps))

    def incompatibility(self) -> str | None:
        """Why this plugin cannot run with this worldflux, or None."""
        if self.plugin_api_version != PLUGIN_API_VERSION:
            return (
                f"it targets plugin API version {self.plugin_api_version}, "
                f"this worldflux {__version__} provides plugin API version {PLUGIN_API_VERSION}"
            )
        if Version(__version__) not in SpecifierSet(self.worldflux_version_range):
            return (
                f"it requires worldflux {self.worldflux_version_range}, "
                f"this is worldflux {__version__}"
            )
        return None


@dataclass
class PluginRecord:
    """Outcome of loading one entry point."""

    group: str
    name: str
    target: str
    distribution: str
    status: Literal["loaded", "skipped", "failed"]
    reason: str = ""
    manifest: PluginManifest | None = None
    families: list[str] = field(default_factory=list)
    components: list[str] = field(default_factory=list)


#: (group, entry point name, distribution) -> outcome
_records: dict[tuple[str, str, str], PluginRecord] = {}


def _distribution(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else "unknown distribution"


def _load_one(ep: EntryPoint, group: str) -> PluginRecord:
    record = PluginRecord(group, ep.name, ep.value, _distribution(ep), "failed")
    label = f"WorldFlux plugin {ep.name!r} ({ep.value}, from {record.distribution})"
    try:
        with (
            WorldModelRegistry.staging(source=f"plugin {ep.name}") as families,
            ComponentRegistry.staging() as components,
        ):
            target = ep.load()
            if not callable(target):
                raise PluginError(
                    f"entry point must name a callable returning a manifest, "
                    f"got {type(target).__name__}."
                )
            manifest = PluginManifest.parse(target())
    except Exception as exc:  # a broken plugin must never break `import worldflux`
        record.reason = f"{type(exc).__name__}: {exc}"
        warnings.warn(
            f"{label} failed to load and was skipped: {record.reason}", PluginWarning, stacklevel=3
        )
        return record
    record.manifest = manifest
    problem = manifest.incompatibility()
    if problem is None:
        conflicts = WorldModelRegistry.conflicts(families) + ComponentRegistry.conflicts(components)
        if conflicts:
            problem = "; ".join(conflicts)
    if problem is not None:
        record.status, record.reason = "skipped", problem
        warnings.warn(f"{label} was skipped: {problem}.", PluginWarning, stacklevel=3)
        return record
    WorldModelRegistry.commit(families)
    ComponentRegistry.commit(components)
    record.status = "loaded"
    record.families = sorted(families.families)
    record.components = sorted(components)
    return record


def load_plugins() -> list[PluginRecord]:
    """Load every not-yet-loaded entry point of :data:`ENTRY_POINT_GROUPS`; return all records.

    Called on ``import worldflux``; call again after installing a plugin into a running process.
    """
    for group in ENTRY_POINT_GROUPS:
        for ep in entry_points(group=group):
            key = (group, ep.name, _distribution(ep))
            if key not in _records:
                _records[key] = _load_one(ep, group)
    return list(_records.values())


def plugin_records() -> list[PluginRecord]:
    """Records of the plugins seen so far (loaded, skipped and failed)."""
    return list(_records.values())
