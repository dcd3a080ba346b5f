"""Dataset recipes (``recipes.toml`` beside this file): named, reproducible `CollectSpec`s."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from .. import resources
from ..core.errors import ConfigError, check_known_keys, unknown_name_message
from .pipeline import CollectSpec, MixPart, MixSpec, TrainSpec

RECIPES_FILE = Path(__file__).with_name("recipes.toml")

_DATASET_KEYS = {
    "env",
    "dataset_id",
    "policy",
    "steps",
    "action_noise",
    "actions",
    "n_envs",
    "seed",
    "score_episodes",
    "ref_max_score",
    "description",
}
_MIX_KEYS = {"env", "dataset_id", "policy", "parts", "ref_max_score", "description"}
_PART_KEYS = {"recipe", "steps"}
_BEHAVIOUR_KEYS = {
    "env",
    "algo",
    "train_steps",
    "n_envs",
    "seed",
    "normalize",
    "file",
    "hyperparams",
    "target_return",
    "eval_every",
}


def behaviour_file(file: str) -> Path:
    """A behaviour policy's ``file``, relative to the exports folder (``exports/`` in a source
    checkout, ``worldflux/_data/exports`` in a wheel)."""
    return resources.data_dir("exports") / file


def load_recipes(path: Path = RECIPES_FILE) -> dict[str, Any]:
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    for section in ("behaviour", "dataset"):
        data.setdefault(section, {})
    return data


def recipe_names() -> list[str]:
    return sorted(load_recipes()["dataset"])


def _check_keys(kind: str, name: str, table: dict[str, Any], known: set[str]) -> None:
    check_known_keys(f"key of {kind} {name!r}", table, known)


def _mix_spec(name: str, d: dict[str, Any], recipes: dict[str, Any]) -> MixSpec:
    _check_keys("mixed dataset recipe", name, d, _MIX_KEYS)
    parts = d.get("parts")
    if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
        raise ConfigError(
            f"recipe {name!r}: parts expected a list of tables "
            f"({{recipe = NAME, steps = N}}), got {parts!r}."
        )
    mix = []
    for part in parts:
        _check_keys(f"part of recipe {name!r}", "", part, _PART_KEYS)
        ref = str(part.get("recipe"))
        if ref not in recipes["dataset"] or ref == name:
            others = [n for n in recipes["dataset"] if n != name]
            raise ConfigError(
                unknown_name_message(f"part recipe (in recipe {name!r})", ref, others)
            )
        if recipes["dataset"][ref].get("policy") == "mix":
            raise ConfigError(
                f"recipe {name!r}: part {ref!r} is itself a mixed recipe; name its parts instead."
            )
        sub = recipe_spec(ref, recipes)
        assert isinstance(sub, CollectSpec)
        steps = part.get("steps")
        mix.append(MixPart(ref, sub, None if steps is None else int(steps)))
    return MixSpec(
        env_id=d["env"],
        dataset_id=d["dataset_id"],
        parts=mix,
        ref_max_score=d.get("ref_max_score"),
        description=d.get("description", ""),
    )


def recipe_spec(name: str, recipes: dict[str, Any] | None = None) -> CollectSpec | MixSpec:
    """The spec of dataset recipe ``name``: a `CollectSpec`, or a `MixSpec` for
    ``policy = "mix"`` recipes (episodes of other recipes' datasets)."""
    recipes = recipes if recipes is not None else load_recipes()
    datasets = recipes["dataset"]
    if name not in datasets:
        raise ConfigError(unknown_name_message("dataset recipe", name, datasets))
    d = dict(datasets[name])
    if d.get("policy") == "mix":
        return _mix_spec(name, d, recipes)
    _check_keys("dataset recipe", name, d, _DATASET_KEYS)
    policy = str(d.pop("policy", "random"))
    kind, _, ref = policy.partition(":")
    train: TrainSpec | None = None
    mode = "final"
    policy_arg = "random"
    if kind in ("behaviour", "replay"):
        behaviours = recipes["behaviour"]
        if ref not in behaviours:
            raise ConfigError(
                unknown_name_message(f"behaviour (in recipe {name!r})", ref, behaviours)
            )
        b = dict(behaviours[ref])
        _check_keys("behaviour", ref, b, _BEHAVIOUR_KEYS)
        if b.get("env") != d.get("env"):
            raise ConfigError(
                f"recipe {name!r} is for env {d.get('env')!r} but behaviour {ref!r} is for "
                f"{b.get('env')!r}."
            )
        file = behaviour_file(b["file"])
        train = TrainSpec(
            algo=b.get("algo", "ppo"),
            train_steps=int(b["train_steps"]),
            n_envs=int(b.get("n_envs", 8)),
            normalize=bool(b.get("normalize", True)),
            hyperparams=dict(b.get("hyperparams", {})),
            save_to=str(file),
            target_return=b.get("target_return"),
            eval_every=int(b.get("eval_every", 25_000)),
        )
        d.setdefault("seed", b.get("seed", 0))
        if kind == "behaviour":
            policy_arg = str(file)
        else:
            policy_arg, mode = "train", "replay"
            d["steps"] = None
    elif policy != "random":
        raise ConfigError(
            f"recipe {name!r}: policy expected 'random', 'behaviour:NAME', 'replay:NAME' or "
            f"'mix', got {policy!r}."
        )
    return CollectSpec(
        env_id=d.pop("env"),
        dataset_id=d.pop("dataset_id"),
        policy=policy_arg,
        mode=mode,  # type: ignore[arg-type]
        train=train,
        **d,
    )
