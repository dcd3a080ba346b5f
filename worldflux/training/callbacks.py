"""Trainer callbacks: hooks called at the start, after every step, after evaluations, after
checkpoints and at the end; plus the built-in ones.

Every hook receives the trainer; ``metrics`` are plain floats. Only the process of rank 0 runs
callbacks that write (the Trainer skips the others on other ranks).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

if TYPE_CHECKING:
    from .trainer import Trainer


class Callback:
    """Base class; override the hooks you need."""

    #: False for callbacks that only read (run on every rank under torchrun).
    writes: bool = True

    def on_train_begin(self, trainer: Trainer) -> None: ...

    def on_step_end(self, trainer: Trainer, metrics: dict[str, float]) -> None: ...

    def on_eval_end(self, trainer: Trainer, metrics: dict[str, float]) -> None: ...

    def on_checkpoint(self, trainer: Trainer, path: Path) -> None: ...

    def on_train_end(self, trainer: Trainer) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must keep for an exact resume (JSON-like)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state


class ProgressBar(Callback):
    """tqdm bar with the loss and samples per second; first a line with the CPU thread count."""

    def __init__(self) -> None:
        self.bar: Any = None

    def on_train_begin(self, trainer: Trainer) -> None:
        if trainer.threads is not None:
            tqdm.write(f"training with {trainer.threads} CPU threads ({trainer.threads_reason})")
        self.bar = tqdm(
            total=trainer.config.steps,
            initial=trainer.step,
            unit="step",
            desc="train",
            dynamic_ncols=True,
        )

    def on_step_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        self.bar.update(1)
        if "train/loss" in metrics:
            self.bar.set_postfix(
                loss=f"{metrics['train/loss']:.4f}",
                samples_s=f"{metrics.get('train/samples_per_s', 0):.0f}",
            )

    def on_eval_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        tqdm.write(f"step {trainer.step}: validation loss {metrics['val/loss']:.4f}")

    def on_train_end(self, trainer: Trainer) -> None:
        if self.bar is not None:
            self.bar.close()


class CSVLogger(Callback):
    """Appends scalars to ``run_dir/metrics.csv`` (one row per logged step or evaluation)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.columns: list[str] = []

    def _write(self, step: int, metrics: dict[str, float]) -> None:
        row = {"step": step, **metrics}
        new_columns = [k for k in row if k not in self.columns]
        if new_columns:
            old_rows: list[dict[str, str]] = []
            if self.path.exists():
                with self.path.open(newline="") as fh:
                    old_rows = list(csv.DictReader(fh))
                    self.columns = list(old_rows[0].keys()) if old_rows else self.columns
            self.columns += [k for k in row if k not in self.columns]
            tmp = self.path.with_suffix(".tmp")
            with tmp.open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=self.columns)
                writer.writeheader()
                writer.writerows(old_rows)
            tmp.replace(self.path)
        with self.path.open("a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=self.columns).writerow(row)

    def on_train_begin(self, trainer: Trainer) -> None:
        """On resume, drop rows a crashed run wrote after the checkpoint it resumes from."""
        if not self.path.exists():
            return
        with self.path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        self.columns = list(rows[0].keys()) if rows else []
        kept = [r for r in rows if int(r["step"]) <= trainer.step]
        if len(kept) != len(rows):
            tmp = self.path.with_suffix(".tmp")
            with tmp.open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=self.columns)
                writer.writeheader()
                writer.writerows(kept)
            tmp.replace(self.path)

    def on_step_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        if metrics:
            self._write(trainer.step, metrics)

    def on_eval_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        self._write(trainer.step, metrics)


class TensorBoardLogger(Callback):
    """Scalars to TensorBoard event files in ``log_dir``."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.writer: Any = None

    def on_train_begin(self, trainer: Trainer) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # on resume, forget what a crashed run logged after its checkpoint (steps > trainer.step)
        purge = trainer.step + 1 if trainer.step else None
        self.writer = SummaryWriter(str(self.log_dir), purge_step=purge)

    def _log(self, step: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def on_step_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        if metrics:
            self._log(trainer.step, metrics)

    def on_eval_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        self._log(trainer.step, metrics)
        self.writer.flush()

    def on_train_end(self, trainer: Trainer) -> None:
        if self.writer is not None:
            self.writer.close()


class BestModel(Callback):
    """Keeps ``run_dir/best`` = the model with the lowest *validation* loss so far."""

    def __init__(self, directory: Path, metric: str = "val/loss") -> None:
        self.directory = directory
        self.metric = metric
        self.best = math.inf
        self.best_step = -1

    def on_eval_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        value = metrics[self.metric]
        if value < self.best:
            self.best, self.best_step = value, trainer.step
            trainer.model.save_pretrained(self.directory)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_step": self.best_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_step = float(state["best"]), int(state["best_step"])


class EarlyStopping(Callback):
    """Stops training after ``patience`` evaluations without a better validation ``metric``."""

    writes = False

    def __init__(self, patience: int, metric: str = "val/loss", min_delta: float = 0.0) -> None:
        self.patience = patience
        self.metric = metric
        self.min_delta = min_delta
        self.best = math.inf
        self.bad_evals = 0

    def on_eval_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        value = metrics[self.metric]
        if value < self.best - self.min_delta:
            self.best, self.bad_evals = value, 0
        else:
            self.bad_evals += 1
            if self.bad_evals >= self.patience:
                trainer.request_stop(
                    f"early stopping: {self.metric} did not improve for {self.patience} evaluations "
                    f"(best {self.best:.5f})"
                )

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_evals": self.bad_evals}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad_evals = float(state["best"]), int(state["bad_evals"])
