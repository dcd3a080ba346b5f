"""Making dream environments: from a run folder, an artifact folder or an env card, and the
gymnasium registration of every card (``entry_point``, ``vector_entry_point``,
``max_episode_steps``) on ``import worldflux``."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from .._optional import torch_available
from ..core.errors import ConfigError, UnexpectedKeywordError, did_you_mean
from ..files import read_json_object
from .backend import check_device
from .cards import EnvCard, find_card, load_cards
from .core import DreamSettings
from .faces import DreamEnv, DreamVectorEnv
from .manifest import read_manifest
from .onnx_backend import OnFallback
from .render import make_frames
from .simulator import MANIFEST, Backend, LearnedSimulator

Vectorization = Literal["gymnasium", "sb3"]


def _card_simulator(card: EnvCard) -> LearnedSimulator:
    if not card.built:
        raise ConfigError(
            f"{card.id}: its artifact {card.artifact_dir} is not built; build it with "
            f"`worldflux build {card.name}`."
        )
    sim = LearnedSimulator.from_artifact(card.artifact_dir)
    sim.defaults = {**sim.defaults, **card.dream_defaults}
    return sim


def load_simulator(source: str | Path) -> LearnedSimulator:
    """A run folder (``run.json``), an artifact folder (``manifest.json``), or an env card's
    name or id."""
    path = Path(source)
    if path.is_dir():
        if (path / MANIFEST).is_file():
            return LearnedSimulator.from_artifact(path)
        if (path / "run.json").is_file():
            return LearnedSimulator.from_run(path)
        raise ConfigError(
            f"{path}: expected a training run (run.json) or an artifact ({MANIFEST}) folder."
        )
    return _card_simulator(find_card(str(source)))


def recorded_dataset(source: str | Path) -> str | None:
    """The dataset id a simulator was trained on, read from its ``run.json`` or manifest without
    loading the model or the dataset (None when none is recorded)."""
    path = Path(source)
    for name, key in (("run.json", ("dataset",)), (MANIFEST, ("info", "dataset"))):
        if path.is_dir() and (path / name).is_file():
            # both checked: a corrupt file is a clear error naming it
            value: Any = read_manifest(path) if name == MANIFEST else read_json_object(path / name)
            for part in key:
                value = value.get(part) if isinstance(value, dict) else None
            return None if value is None else str(value)
    return load_simulator(source).info.get("dataset")


def make_dream_env(
    source: str | Path | LearnedSimulator,
    *,
    num_envs: int | None = None,
    vectorization: Vectorization = "gymnasium",
    autoreset_mode: str = "NextStep",
    backend: Backend | None = None,
    device: str = "cpu",
    bf16: bool = False,
    threads: int | None = None,
    on_fallback: OnFallback = "raise",
    render_mode: str | None = None,
    **settings: Any,
) -> Any:
    """A dream environment over ``source`` (run folder, artifact folder, card name or id).

    ``num_envs=None`` gives a single ``gymnasium.Env``; otherwise a batched env of ``num_envs``:
    a gymnasium ``VectorEnv`` (``vectorization="gymnasium"``, with ``autoreset_mode``) or a
    stable-baselines3 ``VecEnv`` (``"sb3"``). ``settings`` are :class:`DreamSettings` fields
    (``reset``, ``termination``, ``horizon``, ``penalty``, ``halt``, ...). ``render_mode=
    "rgb_array"`` (single env) renders frames (:mod:`worldflux.dream.render`).

    ``backend`` runs the model: ``"torch"`` (``bf16`` opt-in), ``"onnx"`` (ONNX Runtime;
    ``threads``, and ``on_fallback`` for ``device="cuda"``), or ``"auto"`` (times both for this
    ``num_envs`` and keeps the faster). None: onnx where the simulator has exported graphs
    (every built artifact) or torch is missing, else torch; torch too where onnx cannot serve the
    request (``bf16``, or ``device="cuda"`` without ONNX Runtime's CUDA provider).

    Raises:
        UnexpectedKeywordError: a keyword that is neither an argument nor a dream setting (a
            ``ConfigError`` and a ``TypeError``, raised before anything is loaded).
    """
    check_keywords(settings)
    if vectorization not in ("gymnasium", "sb3"):
        raise ConfigError(f"vectorization: expected 'gymnasium' or 'sb3', got {vectorization!r}.")
    check_device(device)
    if num_envs is not None and (
        isinstance(num_envs, bool) or not isinstance(num_envs, int | np.integer) or num_envs < 1
    ):
        raise ConfigError(f"num_envs: expected None or an integer >= 1, got {num_envs!r}.")
    sim = source if isinstance(source, LearnedSimulator) else load_simulator(source)
    if backend is None:
        backend = default_backend(sim, device=device, bf16=bf16)
    core = sim.make_core(
        1 if num_envs is None else num_envs,
        backend=backend,
        device=device,
        bf16=bf16,
        threads=threads,
        on_fallback=on_fallback,
        **settings,
    )
    if num_envs is None:
        if vectorization != "gymnasium":
            raise ConfigError("vectorization='sb3' needs num_envs.")
        frames = None
        if render_mode is not None and core.latent:
            raise ConfigError(
                "render_mode: a dream env in latent-observation mode does not render; use "
                "observation='decoded'."
            )
        if render_mode is not None:
            frames = make_frames(sim.source_env, sim.observation_space, sim.reset_states.start)
        return DreamEnv(core, render_mode=render_mode, frames=frames)
    if render_mode is not None:
        raise ConfigError("render_mode: only single dream envs render (num_envs=None).")
    if vectorization == "sb3":
        from .sb3 import DreamSB3VecEnv

        return DreamSB3VecEnv(core)
    return DreamVectorEnv(core, autoreset_mode=autoreset_mode)


def check_keywords(settings: Mapping[str, Any]) -> None:
    """Refuse the keywords of ``make_dream_env(**settings)`` that are neither dream settings nor
    ``make_core`` arguments with :class:`UnexpectedKeywordError`, whose message has Python's
    ``unexpected keyword argument 'name'`` wording (torchrl's ``GymEnv`` passes ``frameskip`` to
    ``gym.make`` and drops it only on that ``TypeError``) and the closest known name."""
    dream_settings = {f.name for f in dataclasses.fields(DreamSettings)}
    core_arguments = _keyword_names(LearnedSimulator.make_core)
    unknown = sorted(set(settings) - dream_settings - core_arguments)
    if not unknown:
        return
    arguments = _keyword_names(make_dream_env) | core_arguments
    name = unknown[0]
    raise UnexpectedKeywordError(
        f"make_dream_env() got an unexpected keyword argument {name!r} (unknown dream settings "
        f"{unknown}).{did_you_mean(name, dream_settings | arguments)} Dream settings: "
        f"{sorted(dream_settings)}; other arguments: {sorted(arguments)}."
    )


def _keyword_names(function: Any) -> set[str]:
    """Names of the arguments of ``function`` that can be given by keyword (not ``**kwargs``)."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    params = inspect.signature(function).parameters.values()
    return {p.name for p in params if p.kind in kinds} - {"self", "source"}


def default_backend(sim: LearnedSimulator, *, device: str, bf16: bool) -> Backend:
    """The backend used when none is named (see :func:`make_dream_env`)."""
    if not torch_available():
        return "onnx"
    if bf16 or sim.onnx is None:
        return "torch"
    if device != "cpu":
        import onnxruntime

        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            return "torch"
    return "onnx"


# -- gymnasium registration ------------------------------------------------------------------------
def card_env(card: str, **kwargs: Any) -> DreamEnv:
    """``entry_point`` of registered cards (``gym.make``)."""
    return make_dream_env(card, **kwargs)


def card_vector_env(
    card: str, num_envs: int = 1, max_episode_steps: int | None = None, **kwargs: Any
) -> DreamVectorEnv:
    """``vector_entry_point`` of registered cards (``gym.make_vec``, which passes the spec's
    ``max_episode_steps``: the vector env truncates there itself)."""
    if max_episode_steps is not None:
        kwargs.setdefault("horizon", max_episode_steps)
    return make_dream_env(card, num_envs=num_envs, **kwargs)


def register_cards() -> list[str]:
    """Register every env card with gymnasium (idempotent); returns the ids."""
    ids = []
    for name, card in load_cards().items():
        if card.id not in gym.registry:
            gym.register(
                id=card.id,
                entry_point="worldflux.dream.make:card_env",
                vector_entry_point="worldflux.dream.make:card_vector_env",
                max_episode_steps=card.horizon,
                kwargs={"card": name},
            )
        ids.append(card.id)
    return ids
