"""Third-party families and components through entry points.

A distribution declares, in its ``pyproject.toml``::

    [project.entry-points."worldflux.models"]
    my_family = "my_pkg.plugin:register"

``register`` is a callable with no arguments. It (or the import of its module) registers families
with ``@WorldModelRegistry.register`` and components with ``@ComponentRegistry.register``, and it
returns a manifest::

    {"plugin_api_version": 1, "worldflux_version_range": ">=0.1,<0.2",
     "capabilities": ["world_model"]}

Accepted manifests:

* a :class:`PluginManifest`, a mapping with those keys, or any object with those attributes (e.g.
  another library's manifest dataclass); ``capabilities`` (strings) and ``experimental`` (a
  bool) are optional, other keys and attributes are ignored;
* ``plugin_api_version``: an int (``1``) or a version string whose leading number is the
  interface version: ``"1"``, ``"1.0"``, ``"1.x"``, ``"1-experimental"``. Only that number is
  compared with :data:`PLUGIN_API_VERSION`; the rest is informational. So ``"0.x-experimental"``
  declares interface 0 and is skipped as incompatible (its warning names what was declared and
  what is supported); a string without a leading number (``"latest"``) or a bool is malformed;
* ``worldflux_version_range``: a PEP 440 specifier (``">=0.1,<0.2"``) this worldflux must satisfy.

Registrations are staged while the plugin loads and published only when the manifest is
compatible. An incompatible plugin is skipped with a :class:`PluginWarning` naming both versions;
a plugin that raises or returns a malformed manifest is skipped with a warning too, and
the registry keeps working.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Literal

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from .._version import __version__
from .components import ComponentRegistry
from .errors import PluginError
from .registry import WorldModelRegistry, ensure_builtin_families

#: Version of the plugin interface (manifest fields and registration hooks).
PLUGIN_API_VERSION = 1
ENTRY_POINT_GROUPS = ("worldflux.models", "worldflux.components")


class PluginWarning(UserWarning):
    """A plugin was skipped (incompatible, broken, or in conflict with a registered name)."""


#: Accepted ``plugin_api_version`` strings: the interface number, then optional ``.N`` / ``.x``
#: parts and a ``-tag`` (``"1"``, ``"1.0"``, ``"1.x"``, ``"0.x-experimental"``).
_API_VERSION_TEXT = re.compile(r"(\d+)(?:\.(?:\d+|x|X|\*))*(?:[-+][0-9A-Za-z][0-9A-Za-z.-]*)?")
_REQUIRED_FIELDS = ("plugin_api_version", "worldflux_version_range")


def parse_api_version(version: object) -> int:
    """The interface number a ``plugin_api_version`` declares (see the module docstring).

    Raises:
        PluginError: a bool, a negative int, or a string without a leading number.
    """
    if isinstance(version, int) and not isinstance(version, bool) and version >= 0:
        return version
    if isinstance(version, str):
        match = _API_VERSION_TEXT.fullmatch(version.strip())
        if match is not None:
            return int(match.group(1))
    raise PluginError(
        f"manifest plugin_api_version: expected an int or a version string starting with the "
        f"interface number, such as {PLUGIN_API_VERSION}, '{PLUGIN_API_VERSION}', "
        f"'{PLUGIN_API_VERSION}.x' or '{PLUGIN_API_VERSION}-experimental' (this worldflux "
        f"supports interface {PLUGIN_API_VERSION}), got {version!r}."
    )


@dataclass(frozen=True)
class PluginManifest:
    """What a plugin declares about itself (checked on construction).

    Attributes:
        plugin_api_version: the plugin interface it was written for: an int or a version string
            whose leading number is the interface (``1``, ``"1"``, ``"1.x"``); that number must
            equal :data:`PLUGIN_API_VERSION`.
        worldflux_version_range: PEP 440 specifier of the worldflux versions it supports.
        capabilities: free-form tags, e.g. ``["world_model", "image_obs"]``.
        experimental: the plugin calls itself experimental (informational).
    """

    plugin_api_version: int | str
    worldflux_version_range: str
    capabilities: tuple[str, ...] = ()
    experimental: bool = False

    def __post_init__(self) -> None:
        parse_api_version(self.plugin_api_version)
        spec = self.worldflux_version_range
        try:
            SpecifierSet(spec)
        except (InvalidSpecifier, TypeError):
            raise PluginError(
                f"manifest worldflux_version_range: expected a PEP 440 specifier such as "
                f"'>=0.1,<0.2', got {spec!r}."
            ) from None
        caps = self.capabilities
        items = tuple(caps) if isinstance(caps, Iterable) and not isinstance(caps, str) else None
        if items is None or not all(isinstance(c, str) for c in items):
            raise PluginError(f"manifest capabilities: expected a list of strings, got {caps!r}.")
        object.__setattr__(self, "capabilities", items)
        if not isinstance(self.experimental, bool):
            raise PluginError(f"manifest experimental: expected a bool, got {self.experimental!r}.")

    @property
    def api_interface(self) -> int:
        """The interface number :attr:`plugin_api_version` declares."""
        return parse_api_version(self.plugin_api_version)

    @classmethod
    def parse(cls, obj: Any) -> PluginManifest:
        """A manifest from what a plugin's hook returned: a :class:`PluginManifest`, a mapping,
        or an object with the manifest attributes."""
        if isinstance(obj, PluginManifest):
            return obj
        fields = _manifest_fields(obj)
        missing = [k for k in _REQUIRED_FIELDS if k not in fields]
        if missing:
            has = sorted(obj) if isinstance(obj, Mapping) else sorted(fields)
            raise PluginError(f"manifest is missing {missing}; it has {has}.")
        return cls(**fields)

    def incompatibility(self) -> str | None:
        """Why this plugin cannot run with this worldflux, or None."""
        interface = self.api_interface
        if interface != PLUGIN_API_VERSION:
            declared = f"{self.plugin_api_version!r}"
            if isinstance(self.plugin_api_version, str):
                declared += f" (interface {interface})"
            return (
                f"it targets plugin API version {declared}, "
                f"this worldflux {__version__} provides plugin API version {PLUGIN_API_VERSION}"
            )
        if Version(__version__) not in SpecifierSet(self.worldflux_version_range):
            return (
                f"it requires worldflux {self.worldflux_version_range}, "
                f"this is worldflux {__version__}"
            )
        return None


def _manifest_fields(obj: Any) -> dict[str, Any]:
    """The manifest fields found in a mapping or as attributes of an object."""
    names = ("plugin_api_version", "worldflux_version_range", "capabilities", "experimental")
    if isinstance(obj, Mapping):
        return {k: obj[k] for k in names if k in obj}
    if any(hasattr(obj, k) for k in _REQUIRED_FIELDS):
        return {k: getattr(obj, k) for k in names if hasattr(obj, k)}
    raise PluginError(
        f"expected the plugin to return a PluginManifest, an object with the attributes "
        f"{list(_REQUIRED_FIELDS)}, or a manifest mapping, got {type(obj).__name__}."
    )


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
    except Exception as exc:  # a broken plugin must never break the registry's first lookup
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

    Called on the registries' first lookup; call again after installing a plugin into a running
    process. The built-in families register first, so a plugin cannot take their names.
    """
    ensure_builtin_families()
    for group in ENTRY_POINT_GROUPS:
        for ep in entry_points(group=group):
            key = (group, ep.name, _distribution(ep))
            if key not in _records:
                _records[key] = _load_one(ep, group)
    return list(_records.values())


def plugin_records() -> list[PluginRecord]:
    """Records of the plugins seen so far (loaded, skipped and failed)."""
    return list(_records.values())
