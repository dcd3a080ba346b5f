"""Exception types and the "did you mean" helper shared by the whole library.

Every error raised for bad input names what was expected and what was given.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class WorldFluxError(Exception):
    """Base class of all errors raised by WorldFlux."""


class ConfigError(WorldFluxError, ValueError):
    """A configuration value or field is invalid or unknown."""


class UnexpectedKeywordError(ConfigError, TypeError):
    """A function got a keyword argument it does not take.

    Both a :class:`ConfigError` and a ``TypeError`` whose message contains Python's own wording
    ``unexpected keyword argument 'name'``, so callers that probe optional keywords and retry
    without them on that ``TypeError`` (``gymnasium.make`` callers such as torchrl's ``GymEnv``
    with ``frameskip``) work.
    """


class RegistryError(WorldFluxError, KeyError):
    """An unknown or conflicting registry name (family, preset, alias, component)."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable.
        return str(self.args[0]) if self.args else ""


class ContractError(WorldFluxError, ValueError):
    """A payload (State, Batch, ...) or component breaks its contract: key, shape or dtype."""


class SerializationError(WorldFluxError, OSError):
    """A saved model directory is missing, corrupt, too new or of another model type."""


class PluginError(WorldFluxError):
    """A plugin manifest is malformed or incompatible."""


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest candidate, or ``""`` when none is close."""
    matches = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f" Did you mean {matches[0]!r}?" if matches else ""


def unknown_name_message(kind: str, name: str, candidates: Iterable[str]) -> str:
    """Uniform message for an unknown name: what was given, the closest match, all choices."""
    choices = sorted(set(candidates))
    listing = ", ".join(repr(c) for c in choices) if choices else "(none registered)"
    return f"Unknown {kind} {name!r}.{did_you_mean(name, choices)} Known: {listing}."


def check_known_keys(where: str, table: Iterable[str], known: Iterable[str]) -> None:
    """Raise :class:`ConfigError` (with a did-you-mean) for the first key of ``table`` that is
    not in ``known``; ``where`` names the table, e.g. ``"key of agent recipe 'x'"``."""
    allowed = set(known)
    for key in table:
        if key not in allowed:
            raise ConfigError(unknown_name_message(where, key, allowed))


class TorchMissingError(WorldFluxError, ImportError):
    """A part of WorldFlux that needs PyTorch was used where it is not installed."""


class TorchMissingAttributeError(WorldFluxError, AttributeError):
    """A torch-only name of a WorldFlux module was looked up where PyTorch is not installed (an
    ``AttributeError``, so ``hasattr`` answers False)."""
