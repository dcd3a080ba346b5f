"""A training run as one call: dataset + family spec -> run folder (used by `worldflux train`).

Run folder::

    run.json            what was trained: model spec and overrides, dataset, trainer config;
                        the CPU threads of the latest start (``threads_used``)
    metrics.csv, tb/    training and validation scalars
    checkpoints/        step-*/ (model + trainer state), latest
    best/               the model with the lowest validation loss
    model/              the final model (save_pretrained layout)
    metrics.json        final validation metrics, throughput, fidelity (k = 1, 5, 15, 50)
    fidelity.{json,md,png}
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from ..core.errors import ConfigError, SerializationError
from ..core.model import WorldModel
from ..core.serialization import import_paths, is_library_import
from ..data.provider import MinariBatchProvider
from ..eval.fidelity import without_nan
from ..files import read_json_object, write_text_atomic
from .config import TrainerConfig
from .distributed import DistContext
from .trainer import Trainer, seed_everything

RUN_FILE = "run.json"
#: Fields of ``run.json`` a resume needs, with their JSON types.
_SPEC_FIELDS: dict[str, type | tuple[type, ...]] = {
    "model": str,
    "dataset": str,
    "model_overrides": dict,
    "trainer": dict,
    "validation_fraction": (int, float),
}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


# -- checks made before any work or write --------------------------------------------------------
def check_run_dir(run: Path) -> None:
    """Raise :class:`ConfigError` unless ``run`` can become a run folder: it is a folder or can be
    made one (no file at it or above it) and the nearest existing folder is writable."""
    for folder in (run, *run.parents):
        if not folder.exists():
            continue
        if not folder.is_dir():
            where = "is" if folder == run else f"is under {folder}, which is"
            raise ConfigError(
                f"run folder {run}: expected a folder (or a new path), but it {where} a file."
            )
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ConfigError(f"run folder {run}: {folder} is not writable.")
        return


def _refuse_foreign_folder(run: Path) -> None:
    """A new run goes only into a missing or empty folder: training into someone's folder would
    overwrite files such as ``metrics.csv`` and leave a folder that is neither theirs nor a run."""
    if run.is_dir() and any(run.iterdir()):
        raise ConfigError(
            f"run folder {run}: expected a new or empty folder, but it holds files and no "
            f"{RUN_FILE} (it is not a WorldFlux training run); refusing to train into it. "
            "Choose another folder."
        )


def _check_fraction(value: Any) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not 0.0 <= value < 1.0:
        raise ConfigError(f"validation_fraction: expected a number in [0, 1), got {value!r}.")


def _non_finite(value: Any, where: str) -> tuple[str, float] | None:
    """The first NaN or infinity in ``value`` (numbers, lists, dicts) as ``(where, number)``."""
    if isinstance(value, float) and not math.isfinite(value):
        return where, value
    items: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        items = [(f"{where}.{k}", v) for k, v in value.items()]
    elif isinstance(value, list | tuple):
        items = [(f"{where}[{i}]", v) for i, v in enumerate(value)]
    for place, item in items:
        found = _non_finite(item, place)
        if found is not None:
            return found
    return None


def check_model_overrides(overrides: dict[str, Any]) -> None:
    """:class:`ConfigError` naming the setting and its value when a model override holds NaN or
    an infinity (``--model-arg lr=NaN`` parses as one): refused before any data is read."""
    for key, value in overrides.items():
        found = _non_finite(value, key)
        if found is not None:
            raise ConfigError(
                f"model override {found[0]!r}: expected a finite number, got {found[1]!r}."
            )


def _read_run_spec(spec_file: Path) -> dict[str, Any]:
    """``run.json`` of a run being resumed, with the fields a resume needs checked."""
    spec = read_json_object(spec_file)
    for key, kind in _SPEC_FIELDS.items():
        if not isinstance(spec.get(key), kind) or isinstance(spec.get(key), bool):
            raise SerializationError(
                f"{spec_file}: field {key!r} expected {getattr(kind, '__name__', 'a number')}, "
                f"got {spec.get(key)!r}."
            )
    return spec


def resumed_spec(run: Path, model: str | None = None, dataset: str | None = None) -> dict[str, Any]:
    """The checked ``run.json`` of ``run``, to resume it; :class:`ConfigError` when it is missing
    or names another ``model`` or ``dataset`` than the ones given (None: any)."""
    spec_file = run / RUN_FILE
    if not spec_file.is_file():
        raise ConfigError(f"--resume: {spec_file} does not exist; start the run without --resume.")
    spec = _read_run_spec(spec_file)
    for key, given in (("model", model), ("dataset", dataset)):
        if given is not None and given != spec[key]:
            raise ConfigError(
                f"--resume: the run was started with {key} {spec[key]!r}, got {given!r}."
            )
    return spec


def _new_spec(
    run: Path,
    model: str | None,
    dataset: str | None,
    model_overrides: dict[str, Any] | None,
    trainer: dict[str, Any] | None,
    validation_fraction: float,
) -> dict[str, Any]:
    if model is None or dataset is None:
        raise ConfigError("a new run needs a model spec and a dataset id.")
    if (run / RUN_FILE).exists():
        raise ConfigError(
            f"{run} already holds a run; pass --resume to continue it or pick another folder."
        )
    _refuse_foreign_folder(run)
    check_model_overrides(dict(model_overrides or {}))
    return {
        "model": model,
        "dataset": dataset,
        "model_overrides": dict(model_overrides or {}),
        "trainer": TrainerConfig.from_dict(dict(trainer or {})).to_dict(),
        "validation_fraction": validation_fraction,
    }


def imports_allowed(
    spec: dict[str, Any],
    where: Path,
    trust_imports: bool,
    *,
    command: str = "worldflux train --resume --trust-imports",
) -> bool:
    """Whether building the model of a saved run ``spec`` may import the code its model overrides
    name (``"package.module:attr"``: component overrides, ``termination_fn``, ...).

    The rule of ``from_pretrained``: code named in a file is imported only with
    ``trust_imports``; names registered with the library always resolve. Import paths of objects
    WorldFlux itself defines are allowed too (:func:`~worldflux.core.serialization.is_library_import`).
    Anything else raises :class:`ConfigError` naming the import and how to opt in (``command``:
    the command line that opts in).
    """
    found = import_paths(spec["model_overrides"])
    if not found or trust_imports:
        return bool(found)
    foreign = [path for path in found if not is_library_import(path)]
    if foreign:
        raise ConfigError(
            f"{where} names code to import in its model overrides: "
            f"{', '.join(repr(p) for p in foreign)}; resuming would run it. If you trust where "
            f"this run folder came from, resume with trust_imports=True (`{command}`); "
            "otherwise start a new run."
        )
    return True


def _build_model(
    spec: dict[str, Any], data: MinariBatchProvider, trust_imports: bool
) -> WorldModel:
    """The model ``spec`` describes, sized for ``data`` (``create_world_model`` with the trust
    rule of ``from_pretrained``)."""
    from ..core.registry import build_config, parse_spec

    overrides = dict(spec["model_overrides"])
    for key in ("obs_shape", "action_dim"):
        if key in overrides:
            raise ConfigError(
                f"model override {key!r}: expected none (it is taken from the dataset), "
                f"got {overrides[key]!r}."
            )
    components = overrides.pop("component_overrides", None)
    entry, preset = parse_spec(spec["model"])
    config = build_config(
        entry,
        preset,
        {
            "obs_shape": data.store.obs_layout.shape,
            "action_dim": data.store.action_layout.dim,
            **overrides,
        },
    )
    return entry.model_cls(config, component_overrides=components, trust_imports=trust_imports)


# -- the run ---------------------------------------------------------------------------------------
def train_run(
    run_dir: str | Path,
    *,
    model: str | None = None,
    dataset: str | None = None,
    model_overrides: dict[str, Any] | None = None,
    trainer: dict[str, Any] | None = None,
    validation_fraction: float = 0.1,
    resume: bool = False,
    progress: bool = True,
    fidelity: bool = True,
    trust_imports: bool = False,
) -> dict[str, Any]:
    """Train ``model`` (``"family[:preset]"``) on Minari ``dataset`` into ``run_dir``.

    With ``resume``, the run's ``run.json`` supplies everything and training continues from the
    latest checkpoint (from step 0 when the run stopped before its first one); giving a different
    model or dataset then is an error, and code that ``run.json`` names for import (component
    overrides, ``termination_fn`` given as ``"package.module:attr"``) is imported only with
    ``trust_imports`` (see :func:`imports_allowed`). A new run's overrides come from the caller
    and are trusted.

    Every setting, the folder, the device, the dataset and the model are checked before anything
    is written: a refused run leaves no folder behind, and a new run never goes into a folder
    that holds files and is not a run.
    """
    run = Path(run_dir)
    check_run_dir(run)
    if resume:
        spec = resumed_spec(run, model, dataset)
        allow_imports = imports_allowed(spec, run / RUN_FILE, trust_imports)
    else:
        spec = _new_spec(run, model, dataset, model_overrides, trainer, validation_fraction)
        allow_imports = True
    config = TrainerConfig.from_dict(spec["trainer"])
    _check_fraction(spec["validation_fraction"])
    dist = DistContext.from_env()
    data = MinariBatchProvider(
        spec["dataset"],
        validation_fraction=spec["validation_fraction"],
        seed=dist.sampling_seed(config.seed),
        device=str(dist.device(config.device)),
    )
    seed_everything(config.seed)
    net = _build_model(spec, data, allow_imports)
    t = Trainer(net, data, config, run_dir=run, progress=progress, dist=dist)
    if resume and not t.resume():
        warnings.warn(
            f"{run} has no checkpoint yet (it stopped before its first one); training it from "
            "step 0 with its saved settings.",
            stacklevel=2,
        )
    threads = t.apply_threads()
    if dist.is_main:
        run.mkdir(parents=True, exist_ok=True)
        spec["model_config"] = net.config.to_dict()
        spec["num_parameters"] = net.num_parameters()
        spec["threads_used"] = {"count": threads, "reason": t.threads_reason}
        _write_json(run / RUN_FILE, spec)
    result = t.fit()
    if fidelity and dist.is_main:
        from ..eval.fidelity import fidelity_report

        report = fidelity_report(t.model, data)
        report.save(run)
        result["fidelity"] = report.to_dict()
        _write_json(run / "metrics.json", without_nan(result))
    return result


def evaluate_run(
    run_dir: str | Path,
    *,
    which: str = "model",
    dataset: str | None = None,
    horizons: tuple[int, ...] = (1, 5, 15, 50),
    windows: int = 256,
    device: str = "cpu",
) -> Any:
    """Fidelity report of a run's ``model`` (final) or ``best`` model on held-out episodes of
    its dataset (or ``dataset``); written to ``<run>/fidelity-<which>.{json,md,png}``."""
    from ..core.model import WorldModel
    from ..eval.fidelity import fidelity_report

    run = Path(run_dir)
    spec_file = run / RUN_FILE
    if not spec_file.is_file():
        raise ConfigError(f"{run} is not a training run (no {RUN_FILE}).")
    spec = json.loads(spec_file.read_text())
    model = WorldModel.from_pretrained(run / which, device=device)
    data = MinariBatchProvider(
        dataset or spec["dataset"],
        validation_fraction=spec["validation_fraction"],
        device=device,
    )
    if tuple(model.config.obs_shape) != data.store.obs_layout.shape:
        raise ConfigError(
            f"the model expects observations {model.config.obs_shape}, the dataset has "
            f"{data.store.obs_layout.shape}."
        )
    torch.manual_seed(0)
    report = fidelity_report(model, data, horizons=horizons, windows=windows)
    report.save(run, stem=f"fidelity-{which}")
    return report


__all__ = [
    "RUN_FILE",
    "check_model_overrides",
    "check_run_dir",
    "evaluate_run",
    "imports_allowed",
    "resumed_spec",
    "train_run",
]
