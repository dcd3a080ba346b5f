"""A training run as one call: dataset + family spec -> run folder (used by `worldflux train`).

Run folder::

    run.json            what was trained: model spec and overrides, dataset, trainer config
    metrics.csv, tb/    training and validation scalars
    checkpoints/        step-*/ (model + trainer state), latest
    best/               the model with the lowest validation loss
    model/              the final model (save_pretrained layout)
    metrics.json        final validation metrics, throughput, fidelity (k = 1, 5, 15, 50)
    fidelity.{json,md,png}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..core.errors import ConfigError
from ..core.registry import create_world_model
from ..data.provider import MinariBatchProvider
from ..eval.fidelity import without_nan
from .config import TrainerConfig
from .distributed import DistContext
from .trainer import Trainer, seed_everything

RUN_FILE = "run.json"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


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
) -> dict[str, Any]:
    """Train ``model`` (``"family[:preset]"``) on Minari ``dataset`` into ``run_dir``.

    With ``resume``, the run's ``run.json`` supplies everything and training continues from the
    latest checkpoint; giving a different model or dataset then is an error.
    """
    run = Path(run_dir)
    dist = DistContext.from_env()
    spec_file = run / RUN_FILE
    if resume:
        if not spec_file.is_file():
            raise ConfigError(
                f"--resume: {spec_file} does not exist; start the run without --resume."
            )
        saved = json.loads(spec_file.read_text())
        for key, given in (("model", model), ("dataset", dataset)):
            if given is not None and given != saved[key]:
                raise ConfigError(
                    f"--resume: the run was started with {key} {saved[key]!r}, got {given!r}."
                )
        spec = saved
    else:
        if model is None or dataset is None:
            raise ConfigError("a new run needs a model spec and a dataset id.")
        if spec_file.exists():
            raise ConfigError(
                f"{run} already holds a run; pass --resume to continue it or pick another folder."
            )
        spec = {
            "model": model,
            "dataset": dataset,
            "model_overrides": dict(model_overrides or {}),
            "trainer": TrainerConfig.from_dict(dict(trainer or {})).to_dict(),
            "validation_fraction": validation_fraction,
        }
    config = TrainerConfig.from_dict(spec["trainer"])
    data = MinariBatchProvider(
        spec["dataset"],
        validation_fraction=spec["validation_fraction"],
        seed=dist.sampling_seed(config.seed),
        device=str(dist.device(config.device)),
    )
    seed_everything(config.seed)
    net = create_world_model(
        spec["model"],
        obs_shape=data.store.obs_layout.shape,
        action_dim=data.store.action_layout.dim,
        **spec["model_overrides"],
    )
    if dist.is_main:
        run.mkdir(parents=True, exist_ok=True)
        spec["model_config"] = net.config.to_dict()
        spec["num_parameters"] = net.num_parameters()
        _write_json(spec_file, spec)
    t = Trainer(net, data, config, run_dir=run, progress=progress, dist=dist)
    if resume and not t.resume():
        raise ConfigError(f"--resume: {run} has no checkpoint yet.")
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


__all__ = ["RUN_FILE", "evaluate_run", "train_run"]
