"""A learned simulator: a trained world model plus what a dream env needs around it (the
dataset's spaces, observations to reset from, default settings), loaded from a training run or
from a self-contained artifact folder.

Artifact layout (``exports/<name>/``, written atomically)::

    manifest.json        format, family, spaces, source env, default dream settings, card,
                         calibration, the ONNX layout ("onnx") and "integrity": the sha256 and
                         size of every other file and of the manifest's own content, checked on
                         load (worldflux.dream.manifest)
    model/               the world model (config.json, model.safetensors, metadata.json)
    encode.onnx, step.onnx, replace.onnx
                         the same model as ONNX graphs (worldflux.dream.onnx_backend)
    reset_states.npz     "start" [M, *O] and "any" [K, *O] observations (no pickles)
    fidelity.{md,json,png}, shifted.{md,json,png}
                         the model's fidelity reports, when the run has them

Loading an artifact needs no torch: the torch model is read only when the torch backend (or a
re-export) asks for it, and the ONNX backend runs on numpy + onnxruntime. Loading checks the
manifest's structure, every file's hash, the reset states and the graphs' inputs and outputs, and
raises :class:`~worldflux.core.errors.SerializationError` naming the file at fault.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from gymnasium import spaces

from .._optional import torch_available, torch_missing
from ..core.errors import ConfigError, SerializationError
from ..files import refuse_foreign_folder
from .backend import DreamBackend, check_device
from .core import DreamCore, DreamSettings, ResetStates
from .manifest import (
    FORMAT_VERSION,
    MANIFEST,
    RESET_STATES,
    load_reset_states,
    manifest_text,
    read_manifest,
    sealed,
    short_repr,
    verify_integrity,
)
from .onnx_backend import OnFallback, OnnxBackend, OnnxGraphs, OnnxLayout, check_graph_files

if TYPE_CHECKING:
    from ..core.model import WorldModel

Backend = Literal["torch", "onnx", "auto"]

#: at most this many "any"-state observations are kept in an artifact ...
MAX_ANY_STATES = 5_000
#: ... and at most this many bytes of them (uncompressed; 1,365 frames of 64x64 RGB)
MAX_ANY_STATE_BYTES = 16 * 2**20
#: held-out transitions used to calibrate the uncertainty percentiles
CALIBRATION_TRANSITIONS = 4096
PERCENTILES = (50, 90, 95, 99)


def uncertainty_percentiles(model: WorldModel, data: Any) -> dict[str, float]:
    """Percentiles ``{"p50", "p90", "p95", "p99"}`` of the model's epistemic uncertainty for
    one-step transitions of the validation split (train split when there is none); ``{}`` for
    models without uncertainty."""
    import torch

    from ..core.batch_provider import BatchRequest

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
    """A Box (bounds as lists, or one number where every entry is the same, as for images;
    infinities as strings) or Discrete space as JSON data."""
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n)}
    if isinstance(space, spaces.Box):

        def bounds(x: np.ndarray) -> list[Any] | float | str:
            values = [
                v if np.isfinite(v) else str(v) for v in x.astype(np.float64).ravel().tolist()
            ]
            return values[0] if values and all(v == values[0] for v in values) else values

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

        def bounds(value: Any) -> np.ndarray:  # a list, or one number for every entry
            if isinstance(value, list):
                return np.array([float(v) for v in value]).reshape(shape).astype(dtype)
            return np.full(shape, float(value)).astype(dtype)

        low, high = bounds(data["low"]), bounds(data["high"])
        return spaces.Box(low, high, shape, dtype)
    raise SerializationError(f"unknown space type {kind!r}: expected 'Box' or 'Discrete'.")


def _manifest_space(manifest: dict[str, Any], key: str, file: Path) -> spaces.Space[Any]:
    """The space under ``key`` of a manifest, or a :class:`SerializationError` naming ``file``."""
    try:
        return space_from_json(manifest[key])
    except (KeyError, TypeError, ValueError, SerializationError) as exc:
        raise SerializationError(
            f"{file}: {key}: expected {{'type': 'Box', 'shape', 'dtype', 'low', 'high'}} or "
            f"{{'type': 'Discrete', 'n'}}, got {short_repr(manifest[key])} "
            f"({type(exc).__name__}: {exc})."
        ) from None


def _model_obs_shape(space: spaces.Space[Any], file: Path) -> tuple[int, ...]:
    """The model-layout observation shape of ``space`` (CHW for images)."""
    from ..data.spaces import UnsupportedSpaceError, observation_layout

    try:
        return observation_layout(space).shape
    except UnsupportedSpaceError as exc:
        raise SerializationError(f"{file}: observation_space: {exc}") from None


def _manifest_layout(
    manifest: dict[str, Any], file: Path, obs_shape: tuple[int, ...], action: spaces.Space[Any]
) -> OnnxLayout | None:
    """The manifest's ONNX layout (None without one), checked against its spaces."""
    from ..data.spaces import UnsupportedSpaceError, action_layout

    if "onnx" not in manifest:
        return None
    try:
        layout = OnnxLayout.from_json(manifest["onnx"])
        action_dim = action_layout(action).dim
    except (SerializationError, UnsupportedSpaceError) as exc:
        raise SerializationError(f"{file}: onnx: {exc}") from None
    if layout.obs_shape != obs_shape or layout.action_dim != action_dim:
        raise SerializationError(
            f"{file}: onnx: the graphs take observations {list(layout.obs_shape)} and actions "
            f"[{layout.action_dim}], but the spaces give observations {list(obs_shape)} and "
            f"actions [{action_dim}]."
        )
    return layout


@dataclass(kw_only=True)
class LearnedSimulator:
    """A model with its spaces, reset observations and default dream settings.

    Attributes:
        model: the trained world model (torch), or None until :meth:`torch_model` loads it from
            ``folder``.
        observation_space, action_space: the dataset's (= the real environment's) spaces.
        reset_states: observations to reset from (model layout).
        defaults: default :class:`DreamSettings` fields (from an env card or the run).
        source_env: id of the real environment the data came from (for evaluation/rendering).
        info: anything else the manifest records (dataset id, run, card).
        calibration: for models with uncertainty, percentiles of the epistemic uncertainty on
            held-out dataset transitions (``{"p50": ..., "p90": ..., "p95": ..., "p99": ...}``);
            ``halt="p99"`` (any of these keys) halts at that value (MOReL's calibrated threshold).
        folder: the artifact folder this simulator was read from (None for runs).
        onnx: the layout of the artifact's ONNX graphs (None when it has none).
    """

    model: WorldModel | None = None
    observation_space: spaces.Space[Any]
    action_space: spaces.Space[Any]
    reset_states: ResetStates
    defaults: dict[str, Any] = field(default_factory=dict)
    source_env: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, float] = field(default_factory=dict)
    folder: Path | None = None
    onnx: OnnxLayout | None = None
    #: graphs exported in memory (runs, artifacts without graphs), kept for later backends
    _exported: tuple[int, OnnxGraphs] | None = field(default=None, repr=False, compare=False)

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_run(
        cls, run_dir: str | Path, *, which: str = "model", trust_imports: bool = False
    ) -> LearnedSimulator:
        """From a ``worldflux train`` run folder: its ``model`` (final) or ``best`` model and
        its dataset (which must be available locally). ``trust_imports`` is passed to
        :func:`~worldflux.core.serialization.load_pretrained`: code the saved model names for
        import is imported only with it."""
        if not torch_available():
            raise torch_missing("LearnedSimulator.from_run")
        from ..core.serialization import load_pretrained
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
        keep = min(MAX_ANY_STATES, MAX_ANY_STATE_BYTES // max(store.obs[0].nbytes, 1))
        rows = rng.choice(len(store.obs), min(max(keep, 1), len(store.obs)), replace=False)
        env_spec = getattr(dataset, "env_spec", None)
        model = load_pretrained(run / which, trust_imports=trust_imports)
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
        """From an artifact folder written by :meth:`save_artifact`, checked on the way: the
        manifest's structure, the hashes of the artifact's files (an artifact written without
        them loads with an :class:`~worldflux.dream.manifest.UnverifiedArtifactWarning`), the
        reset states and the ONNX graphs' inputs and outputs (:mod:`worldflux.dream.manifest`).

        Raises:
            ConfigError: ``directory`` has no ``manifest.json``.
            SerializationError: a file is missing, corrupt, or does not fit the manifest (the
                message names the file, what was expected and what was found).
        """
        folder = Path(directory)
        manifest = read_manifest(folder)
        verify_integrity(folder, manifest)
        return cls.from_manifest(folder, manifest)

    @classmethod
    def from_manifest(cls, folder: Path, manifest: dict[str, Any]) -> LearnedSimulator:
        """From the checked manifest (:func:`~worldflux.dream.manifest.read_manifest`) of the
        artifact in ``folder``: reads and checks its spaces, ONNX layout, reset states and graphs,
        but not the files' hashes (:meth:`from_artifact` verifies those first)."""
        file = folder / MANIFEST
        observation_space = _manifest_space(manifest, "observation_space", file)
        action_space = _manifest_space(manifest, "action_space", file)
        obs_shape = _model_obs_shape(observation_space, file)
        layout = _manifest_layout(manifest, file, obs_shape, action_space)
        reset_states = load_reset_states(folder / RESET_STATES, obs_shape)
        if layout is not None:
            check_graph_files(folder, layout)
        return cls(
            observation_space=observation_space,
            action_space=action_space,
            reset_states=reset_states,
            defaults=dict(manifest.get("defaults", {})),
            source_env=manifest.get("source_env"),
            info=dict(manifest.get("info", {})),
            calibration={k: float(v) for k, v in manifest.get("calibration", {}).items()},
            folder=folder,
            onnx=layout,
        )

    def torch_model(self) -> WorldModel:
        """The torch world model (read from the artifact folder on first use)."""
        if self.model is None:
            if self.folder is None:
                raise ConfigError("this simulator has neither a model nor an artifact folder.")
            if not torch_available():
                raise torch_missing("the torch backend (and export) of a learned simulator")
            from ..core.serialization import load_pretrained

            self.model = load_pretrained(self.folder / "model")
        return self.model

    def onnx_graphs(self, *, refresh: bool = False) -> OnnxGraphs:
        """The artifact's ONNX graphs, or (for runs and artifacts without them) graphs exported
        in memory from the torch model, once per model (``refresh`` exports again, e.g. after
        its weights were changed in place)."""
        if self.folder is not None and self.onnx is not None:
            return OnnxGraphs.from_folder(self.folder, self.onnx)
        if not torch_available():
            raise torch_missing("exporting a learned simulator without ONNX graphs")
        from ..export.onnx import export_graphs

        model = self.torch_model()
        if refresh or self._exported is None or self._exported[0] != id(model):
            self._exported = (id(model), export_graphs(model, self.reset_states.start))
        return self._exported[1]

    def save_artifact(
        self, directory: str | Path, *, extra_files: tuple[Path, ...] = (), onnx: bool = True
    ) -> Path:
        """Write the artifact folder (replaced atomically) with the torch model and, with
        ``onnx``, its ONNX graphs; ``extra_files`` (e.g. the fidelity report) are copied in."""
        target = Path(directory)
        refuse_foreign_folder(target, MANIFEST, "learned-simulator artifact")
        model = self.torch_model()
        graphs = None
        if onnx:
            from ..export.onnx import export_graphs

            graphs = export_graphs(model, self.reset_states.start)
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=target.parent))
        try:
            model.save_pretrained(staged / "model")
            np.savez_compressed(
                staged / RESET_STATES,
                start=self.reset_states.start,
                any=self.reset_states.any,
            )
            manifest = {
                "format_version": FORMAT_VERSION,
                "family": model.model_type,
                "observation_space": space_to_json(self.observation_space),
                "action_space": space_to_json(self.action_space),
                "source_env": self.source_env,
                "defaults": self.defaults,
                "info": self.info,
                "calibration": self.calibration,
            }
            if graphs is not None:
                from ..export.onnx import write_graphs

                write_graphs(graphs, staged)
                manifest["onnx"] = graphs.layout.to_json()
            for path in extra_files:
                shutil.copy2(path, staged / Path(path).name)
            # written last: its integrity section hashes every other file of the folder
            (staged / MANIFEST).write_text(manifest_text(sealed(staged, manifest)))
            from ..core.serialization import replace_dir_atomically

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

    def make_backend(
        self,
        backend: Literal["torch", "onnx"],
        *,
        device: str = "cpu",
        bf16: bool = False,
        threads: int | None = None,
        on_fallback: OnFallback = "raise",
    ) -> DreamBackend:
        """The model on one backend: ``"torch"`` (``bf16`` opt-in) or ``"onnx"`` (ONNX Runtime;
        ``threads`` and ``on_fallback`` as in :class:`~worldflux.dream.onnx_backend.OnnxBackend`)."""
        check_device(device)
        if backend == "torch":
            if threads is not None:
                raise ConfigError(
                    "threads: only the onnx backend takes a thread count (torch's is "
                    "process-wide: torch.set_num_threads)."
                )
            if not torch_available():
                raise torch_missing("backend='torch'")
            from .torch_backend import TorchBackend

            return TorchBackend(self.torch_model(), device=device, bf16=bf16)
        if backend == "onnx":
            if bf16:
                raise ConfigError("bf16: only the torch backend has a bf16 mode (backend='torch').")
            return OnnxBackend(
                self.onnx_graphs(), device=device, threads=threads, on_fallback=on_fallback
            )
        raise ConfigError(f"backend: expected 'torch', 'onnx' or 'auto', got {backend!r}.")

    def make_core(
        self,
        num_envs: int = 1,
        *,
        backend: Backend = "torch",
        device: str = "cpu",
        bf16: bool = False,
        threads: int | None = None,
        on_fallback: OnFallback = "raise",
        **settings: Any,
    ) -> DreamCore:
        """A :class:`DreamCore` of ``num_envs`` environments on ``backend``: ``"torch"``,
        ``"onnx"``, or ``"auto"``, which times both at ``num_envs`` (a few steps each, after a
        warm-up) and keeps the faster (a backend that cannot be built here drops out; ``threads``
        applies to the onnx candidate). The chosen backend's name is ``core.backend_name``."""
        if backend == "auto":
            if bf16:
                raise ConfigError(
                    "bf16 needs backend='torch' (auto could pick onnx, which has none)."
                )
            options: dict[Literal["torch", "onnx"], DreamBackend] = {}
            failures = []
            for name in ("torch", "onnx") if torch_available() else ("onnx",):
                try:  # a candidate that cannot be built (no graphs, no torch model) drops out
                    options[name] = self.make_backend(
                        name,
                        device=device,
                        threads=threads if name == "onnx" else None,
                        on_fallback=on_fallback,
                    )
                except (ConfigError, SerializationError, ImportError) as exc:
                    failures.append(f"{name}: {exc}")
            if not options:
                raise ConfigError(
                    "backend='auto': no backend could be built: " + "; ".join(failures)
                )
            obs = self.reset_states.start[np.arange(num_envs) % len(self.reset_states.start)]
            times = {name: step_seconds(b, obs) for name, b in options.items()}
            chosen: Literal["torch", "onnx"] = min(times, key=lambda name: times[name])
            made = options[chosen]
        else:
            chosen = backend
            made = self.make_backend(
                backend, device=device, bf16=bf16, threads=threads, on_fallback=on_fallback
            )
        core = DreamCore(
            made,
            self.observation_space,
            self.action_space,
            self.reset_states,
            self.settings(**settings),
            num_envs,
        )
        core.backend_name = chosen
        return core


def step_seconds(backend: DreamBackend, obs: np.ndarray, steps: int = 7, warmup: int = 2) -> float:
    """Median seconds of one batched ``step`` of ``backend`` from states encoded from ``obs``
    (``[N, *O]``), with zero actions and mid-range noise."""
    n = len(obs)
    state = backend.encode(obs)
    action = np.zeros((n, backend.action_dim), np.float32)
    noise = {
        k: np.full((n, *s.shape), 0.5 if s.distribution == "uniform" else 0.0, np.float32)
        for k, s in backend.noise_spec.items()
    }
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        state, _ = backend.step(state, action, noise)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return float(np.median(times))
