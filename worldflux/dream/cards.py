"""Env cards (``envs/*.toml``): one registered dream-environment id each, with everything needed
to rebuild its artifact and the defaults of its dream settings.

Card schema (every key is checked; unknown keys are errors)::

    id = "WorldFlux/Dreamer-Walker-v0"    # gymnasium id (registered on `import worldflux`)
    description = "..."
    source_env = "Walker2d-v5"           # the real environment the data comes from
    dataset_recipe = "walker2d-medium"   # `worldflux collect --recipe` name that builds the data
    model = "dreamerv3:proprio"          # family[:preset]
    model_overrides = {}                 # optional config fields
    artifact = "dreamer-walker-v0"       # folder under exports/
    horizon = 1000                       # max_episode_steps (truncation)
    onnx = true                          # optional: false ships the torch model only
    [train]                              # TrainerConfig fields for `worldflux build`
    steps = 4000
    [defaults]                           # DreamSettings fields (reset, termination, penalty, ...)
    termination = "sample"

Cards and artifacts are found beside the package (``worldflux/_data/{envs,exports}`` in a wheel)
or at the project root (``envs/``, ``exports/`` in a source checkout or editable install).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .. import resources
from ..core.errors import ConfigError, unknown_name_message
from .core import DreamSettings


def cards_dir() -> Path:
    """Folder of the env cards."""
    return resources.data_dir("envs")


def exports_dir() -> Path:
    """Folder of the built artifacts."""
    return resources.data_dir("exports")


@dataclass(frozen=True)
class EnvCard:
    """One env card (see module docstring for the schema)."""

    id: str
    source_env: str
    dataset_recipe: str
    model: str
    artifact: str
    horizon: int
    description: str = ""
    #: whether the artifact carries ONNX graphs beside the torch model
    onnx: bool = True
    model_overrides: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    @property
    def artifact_dir(self) -> Path:
        return exports_dir() / self.artifact

    @property
    def built(self) -> bool:
        return (self.artifact_dir / "manifest.json").is_file()

    @property
    def dream_defaults(self) -> dict[str, Any]:
        """The card's default :class:`DreamSettings` fields, its horizon included."""
        return {**self.defaults, "horizon": self.horizon}


def read_card(path: Path) -> EnvCard:
    """Parse and check one card file."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"env card {path}: not valid TOML ({exc}).") from None
    known = {f.name for f in fields(EnvCard)} - {"name"}
    for key in data:
        if key not in known:
            raise ConfigError(
                unknown_name_message(f"env card {path.name}: key", key, sorted(known))
            )
    required = ("id", "source_env", "dataset_recipe", "model", "artifact", "horizon")
    missing = [k for k in required if k not in data]
    if missing:
        raise ConfigError(f"env card {path}: missing keys {missing}.")
    if not isinstance(data["horizon"], int) or data["horizon"] < 1:
        raise ConfigError(
            f"env card {path}: horizon must be an integer >= 1, got {data['horizon']!r}."
        )
    if not isinstance(data.get("onnx", True), bool):
        raise ConfigError(f"env card {path}: onnx must be true or false, got {data['onnx']!r}.")
    card = EnvCard(**data, name=path.stem)
    DreamSettings.from_dict(card.dream_defaults)  # the defaults must be valid settings
    return card


def load_cards(folder: Path | None = None) -> dict[str, EnvCard]:
    """All cards of ``folder`` (default :func:`cards_dir`), keyed by card name (file stem)."""
    root = folder if folder is not None else cards_dir()
    cards = {p.stem: read_card(p) for p in sorted(root.glob("*.toml"))}
    ids: dict[str, str] = {}
    for name, card in cards.items():
        if card.id in ids:
            raise ConfigError(f"env cards {ids[card.id]!r} and {name!r} both register {card.id!r}.")
        ids[card.id] = name
    return cards


def find_card(name_or_id: str) -> EnvCard:
    """A card by file stem (``dreamer-walker``) or env id (``WorldFlux/Dreamer-Walker-v0``)."""
    cards = load_cards()
    if name_or_id in cards:
        return cards[name_or_id]
    for card in cards.values():
        if card.id == name_or_id:
            return card
    raise ConfigError(
        unknown_name_message("env card", name_or_id, sorted(cards) + [c.id for c in cards.values()])
    )
