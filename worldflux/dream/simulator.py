"""A learned simulator: a trained world model plus what a dream env needs around it (the
dataset's spaces, observations to reset from, default settings), loaded from a training run or
from a self-contained artifact folder.

Artifact layout (``exports/<name>/``, written atomically)::

    manifest.json        format, spaces, source env, horizon, default dream settings, card
    model/               the world model (config.json, model.safetensors, metadata.json)
    reset_states.npz     "start" [M, *O] and "any" [K, *O] observations (no pickles)
    fidelity.{md,json,png}  the model's fidelity report, when the run has one
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from gymnasium import spaces

from ..core.batch_provider import BatchRequest
from ..core.errors import ConfigError, SerializationError
from ..core.model import WorldModel
from ..core.serialization import load_pretrained, replace_dir_atomically
from .core import DreamCore, DreamSettings, ResetStates
from .torch_backend import TorchBackend

MANIFEST = "manifest.json"
RESET_STATES = "reset_states.npz"
FORMAT_VERSION = 1
#: at most this many "any"-state observations are kept in an artifact
MAX_ANY_STATES = 5_000
#: held-out transitions used to calibrate the uncertainty percentiles
CALIBRATION_TRANSITIONS = 4096
PERCENTILES = (50, 90, 95, 99)


def uncertainty_percentiles(model: WorldModel, data: Any) -> dict[str, float]:
    """Percentiles ``{"p50", "p90", "p95", "p99"}`` of the model's epistemic uncertainty for
    one-step transitions of the validation split (train split when there is none); ``{}`` for
    models without uncertainty."""
    split: Literal["train", "validation"] = (
        "validation" if len(data.episodes["validation"]) else "train"
    )
    batch = data.get_batch(BatchRequest(CALIBRATION_TRANSITIONS, 1, split=split, seed=0))
    model.eval()
    with torch.no_grad():
        state = model.transition(
            model.encode(batch.obs[:, 0]), batch.actions[:, 0], deterministic=True
        )
        u = model.decode(state).uncertainty
    if u is None:
        return {}
    values = u.float().cpu().numpy()
    return {f"p{p}": float(np.percentile(values, p)) for p in PERCENTILES}


def space_to_json(space: spaces.Space[Any]) -> dict[str, Any]:
    """A Box (bounds as lists, infinities as strings) or Discrete space as JSON data."""
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n)}
    if isinstance(space, spaces.Box):

        def bounds(x: np.ndarray) -> list[Any]:
            return [v if np.isfinite(v) else str(v) for v in x.astype(np.float64).ravel().tolist()]

        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": str(space.dtype),
            "low": bounds(space.low),
            "high": bounds(space.high),
        }
    raise ConfigError(f"cannot describe space {space}: expected Box or Discrete.")


def space_from_json(data: dict[str, Any]) -> spaces.Space[Any]:
    kind = data.get("type")
    if kind == "Discrete":
        return spaces.Discrete(int(data["n"]))
    if kind == "Box":
        shape = tuple(int(s) for s in data["shape"])
        dtype = np.dtype(data["dtype"])
        low = np.array([float(v) for v in data["low"]]).reshape(shape).astype(dtype)
        high = np.array([float(v) for v in data["high"]]).reshape(shape).astype(dtype)
        return spaces.Box(low, high, shape, dtype)
    raise SerializationError(f"unknown space type {kind!r}: expected 'Box' or 'Discrete'.")


@dataclass
class LearnedSimulator:
    """A model with its spaces, reset observations and default dream settings.

    Attributes:
        model: the trained world model.
        observation_space, action_space: the dataset's (= the real environment's) spaces.
        reset_states: observations to reset from (model layout).
        defaults: default :class:`DreamSettings` fields (from an env card or the run).
        source_env: id of the real environment the data came from (for evaluation/rendering).
        info: anything else the manifest records (dataset id, run, card).
        calibration: for models with uncertainty, percentiles of the epistemic uncertainty on
            held-out dataset transitions (``{"p50": ..., "p90": ..., "p95": ..., "p99": ...}``);
            ``halt="p99"`` (any of these keys) halts at that value (MOReL's calibrated threshold).
    """

    model: WorldModel
    observation_space: spaces.Space[Any]
    action_space: spaces.Space[Any]
    reset_states: ResetStates
    defaults: dict[str, Any] = field(default_factory=dict)
    source_env: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, float] = field(default_factory=dict)

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_run(cls, run_dir: str | Path, *, which: str = "model") -> LearnedSimulator:
        """From a ``worldflux train`` run folder: its ``model`` (final) or ``best`` model and
        its dataset (which must be available locally)."""
        from ..data.minari_io import load_minari_dataset
        from ..data.provider import MinariBatchProvider

        run = Path(run_dir)
        spec_file = run / "run.json"
        if not spec_file.is_file():
            raise ConfigError(f"{run} is not a training run: {spec_file} is missing.")
        spec = json.loads(spec_file.read_text())
        dataset = load_minari_dataset(spec["dataset"])
        data = MinariBatchProvider(spec["dataset"], validation_fraction=spec["validation_fraction"])
        store = data.store
        starts = store.obs[store.obs_starts]
        rng = np.random.default_rng(0)
        rows = rng.choice(len(store.obs), min(MAX_ANY_STATES, len(store.obs)), replace=False)
        env_spec = getattr(dataset, "env_spec", None)
        model = load_pretrained(run / which)
        return cls(
            model=model,
            observation_space=dataset.observation_space,
            action_space=dataset.action_space,
            reset_states=ResetStates(start=starts, any=store.obs[np.sort(rows)]),
            source_env=None if env_spec is None else env_spec.id,
            info={"dataset": spec["dataset"], "run": str(run), "model_spec": spec["model"]},
            calibration=uncertainty_percentiles(model, data),
        )

    @classmethod
    def from_artifact(cls, directory: str | Path) -> LearnedSimulator:
        """From an artifact folder written by :meth:`save_artifact`."""
        folder = Path(directory)
        manifest_file = folder / MANIFEST
        if not manifest_file.is_file():
            raise ConfigError(f"{folder} is not a learned-simulator artifact: no {MANIFEST}.")
        manifest = json.loads(manifest_file.read_text())
        version = manifest.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise SerializationError(
                f"{manifest_file}: format_version {version!r} is not supported (this library "
                f"reads up to {FORMAT_VERSION}); upgrade worldflux."
            )
        with np.load(folder / RESET_STATES, allow_pickle=False) as states:
            reset_states = ResetStates(start=states["start"], any=states["any"])
        return cls(
            model=load_pretrained(folder / "model"),
            observation_space=space_from_json(manifest["observation_space"]),
            action_space=space_from_json(manifest["action_space"]),
            reset_states=reset_states,
            defaults=dict(manifest.get("defaults", {})),
            source_env=manifest.get("source_env"),
            info=dict(manifest.get("info", {})),
            calibration={k: float(v) for k, v in manifest.get("calibration", {}).items()},
        )

    def save_artifact(self, directory: str | Path, *, extra_files: tuple[Path, ...] = ()) -> Path:
        """Write the artifact folder (replaced atomically); ``extra_files`` (e.g. the fidelity
        report) are copied in."""
        target = Path(directory)
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=target.parent))
        try:
            self.model.save_pretrained(staged / "model")
            np.savez(
                staged / RESET_STATES,
                start=self.reset_states.start,
                any=self.reset_states.any,
            )
            manifest = {
                "format_version": FORMAT_VERSION,
                "family": self.model.model_type,
                "observation_space": space_to_json(self.observation_space),
                "action_space": space_to_json(self.action_space),
                "source_env": self.source_env,
                "defaults": self.defaults,
                "info": self.info,
                "calibration": self.calibration,
            }
            (staged / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
            for path in extra_files:
                shutil.copy2(path, staged / Path(path).name)
            replace_dir_atomically(staged, target)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        return target

    # -- dream environments --------------------------------------------------------------------
    def settings(self, **overrides: Any) -> DreamSettings:
        """The simulator's default settings with ``overrides`` applied; a ``halt`` given as a
        calibration key (``"p99"``) becomes that calibrated uncertainty."""
        values = {**self.defaults, **overrides}
        halt = values.get("halt")
        if isinstance(halt, str):
            if halt not in self.calibration:
                raise ConfigError(
                    f"halt={halt!r}: expected a number or one of the calibrated percentiles "
                    f"{sorted(self.calibration)} (models with uncertainty are calibrated when "
                    "built from a run)."
                )
            values["halt"] = self.calibration[halt]
        return DreamSettings.from_dict(values)

    def make_core(
        self,
        num_envs: int = 1,
        *,
        device: str = "cpu",
        bf16: bool = False,
        **settings: Any,
    ) -> DreamCore:
        """A :class:`DreamCore` of ``num_envs`` environments on the torch backend."""
        return DreamCore(
            TorchBackend(self.model, device=device, bf16=bf16),
            self.observation_space,
            self.action_space,
            self.reset_states,
            self.settings(**settings),
            num_envs,
        )
