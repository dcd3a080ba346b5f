"""`Trainer`: trains any `WorldModel` (anything with ``loss(batch)``) from a batch provider.

One loop for every family: AdamW over the model's parameter groups, warm-up and schedule,
gradient clipping, optional bf16 autocast, periodic validation on held-out episodes (fixed
batches), atomic checkpoints with exact resume, callbacks, and DistributedDataParallel when run
under ``torchrun``. A non-finite loss stops training with an error naming the last good
checkpoint; nothing is clamped.

Model hooks: ``set_data_statistics(data.stats)`` once when the Trainer is built (when the provider
has ``stats``), ``after_update()`` after every optimiser step, ``after_evaluation(metrics)``
after every validation pass (before the callbacks see the metrics), ``after_training(data, ...)``
once when the steps end (the RSSM fits its error heads there).
"""

from __future__ import annotations

import copy
import json
import logging
import random
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.batch_provider import BatchProviderV2, BatchRequest
from ..core.errors import ConfigError, ContractError, WorldFluxError
from ..core.model import WorldModel
from ..core.payloads import Batch
from ..core.serialization import WEIGHTS_FILE
from .callbacks import BestModel, Callback, CSVLogger, EarlyStopping, ProgressBar, TensorBoardLogger
from .checkpoint import (
    latest_checkpoint,
    read_state,
    remove_stale_temporaries,
    write_checkpoint,
)
from .config import TrainerConfig, resolve_threads
from .distributed import DistContext

_log = logging.getLogger(__name__)

#: Seed of the fixed validation batches (the same batches at every evaluation).
VALIDATION_SEED = 12345


class NonFiniteLossError(WorldFluxError, FloatingPointError):
    """The training loss became NaN or infinite."""


class _LossForward(nn.Module):
    """``forward(batch) = model.loss(batch)`` so DistributedDataParallel can wrap the loss."""

    def __init__(self, model: WorldModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = self.model.loss(batch)
        return out.loss, out.components


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Train ``model`` on ``data``.

    Args:
        model: any :class:`WorldModel`.
        data: a ``BatchProviderV2`` with ``train`` and ``validation`` splits (e.g.
            :class:`~worldflux.data.MinariBatchProvider`); its ``state_dict()`` /
            ``load_state_dict()`` are checkpointed when it has them.
        config: :class:`TrainerConfig`.
        run_dir: where logs, checkpoints and the final model go (None: nothing is written);
            the temporaries killed writes left there (checkpoints, ``model/``, ``best/``,
            atomic file writes) are removed.
        callbacks: extra callbacks (run after the built-in ones).
        progress: show a progress bar.
        dist: the distributed context (default: from torchrun's environment, else single process).
    """

    def __init__(
        self,
        model: WorldModel,
        data: BatchProviderV2,
        config: TrainerConfig,
        *,
        run_dir: str | Path | None = None,
        callbacks: Sequence[Callback] = (),
        progress: bool = True,
        dist: DistContext | None = None,
    ) -> None:
        if not isinstance(data, BatchProviderV2):
            raise ContractError(
                f"Trainer: data must implement BatchProviderV2 (get_batch(request)), got "
                f"{type(data).__name__}."
            )
        self.dist = dist or DistContext.from_env()
        self.config = config
        seed_everything(config.seed + self.dist.rank)
        self.device = self.dist.device(config.device)
        self.model = model.to(self.device)
        self.data = data
        stats = getattr(data, "stats", None)
        if stats is not None:  # normalisation from the training split (resume restores its own)
            self.model.set_data_statistics(stats.to_dict() if hasattr(stats, "to_dict") else stats)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.step = 0
        self.stop_reason: str | None = None
        self.last_checkpoint: Path | None = None
        self.history: list[dict[str, float]] = []
        self.optimizer = self._make_optimizer()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, config.lr_factor)
        self._forward: nn.Module = self.dist.wrap(_LossForward(self.model), self.device)
        self._batch("train", seed=0)  # bad seq_len / empty split: fail now, not after training
        if config.end_fraction:
            self._correct_end_rate()
        self.has_validation = self._probe_validation()
        self.callbacks: list[Callback] = self._default_callbacks(progress) + list(callbacks)
        self._evaluated_at = -1
        self._checkpointed_at = -1
        #: what the model's ``after_training`` returned (kept in the final checkpoint)
        self.after_training: dict[str, float] = {}
        #: torch's intra-op thread count once :meth:`apply_threads` ran (None before), and why.
        self.threads: int | None = None
        self.threads_reason = ""
        if self.run_dir is not None and self.dist.is_main:  # after every check above
            remove_stale_temporaries(self.run_dir)  # left by writes that were killed

    # -- set-up -------------------------------------------------------------------------------
    def _correct_end_rate(self, batches: int = 32) -> None:
        """With ``end_fraction``, training batches hold ends more often than the data does, and
        a termination model learns that higher rate. Measure both rates on ``batches`` seeded
        training batches each (the sampling stream is not advanced) and hand them to the
        model's ``correct_end_rate(real, drawn)``, which undoes the difference in imagination."""
        correct = getattr(self.model, "correct_end_rate", None)
        if correct is None:
            raise ConfigError(
                f"TrainerConfig.end_fraction={self.config.end_fraction}: expected a model that "
                f"can correct its learned end rate (correct_end_rate(real, drawn), as the "
                f"diffusion and token families have), got {type(self.model).__name__}."
            )
        rates = []
        for fraction in (0.0, self.config.end_fraction):
            ends = real = 0.0
            for seed in range(1, batches + 1):
                batch = self.data.get_batch(
                    BatchRequest(
                        self.config.batch_size,
                        self.config.seq_len,
                        seed=seed,
                        end_fraction=fraction,
                    )
                )
                valid = batch.valid.float()
                ends += float((batch.terminations.float() * valid).sum())
                real += float(valid.sum())
            rates.append(ends / max(real, 1.0))
        correct(*rates)

    def apply_threads(self) -> int:
        """Set torch's intra-op thread count from ``config.threads`` (see
        :func:`~worldflux.training.config.resolve_threads`); return the count in use.

        :meth:`fit` calls it first. ``torch.set_num_threads`` is process-wide: the count stays
        after training. Logged once per call at INFO level (``worldflux.training.trainer``).
        """
        count, self.threads_reason = resolve_threads(self.config.threads)
        if count is not None and count != torch.get_num_threads():
            torch.set_num_threads(count)
        self.threads = torch.get_num_threads()
        _log.info("training with %d CPU threads (%s)", self.threads, self.threads_reason)
        return self.threads

    def _probe_validation(self) -> bool:
        try:
            self._batch("validation", seed=0)
        except ConfigError as exc:
            if self.config.early_stopping_patience:
                raise ConfigError(f"early stopping needs validation batches, but {exc}") from None
            warnings.warn(
                f"no validation batches ({exc}); evaluation and best-model tracking are off.",
                stacklevel=3,
            )
            return False
        return True

    def _make_optimizer(self) -> torch.optim.Optimizer:
        groups = []
        seen: set[int] = set()
        for i, group in enumerate(self.model.param_groups()):
            params = list(group["params"])
            if not params:
                continue
            for p in params:
                if id(p) in seen:
                    raise ContractError(
                        f"{type(self.model).__name__}.param_groups(): a parameter appears in "
                        f"more than one group (group {group.get('name', i)!r})."
                    )
                seen.add(id(p))
            groups.append(
                {
                    "params": params,
                    "name": group.get("name", f"group{i}"),
                    "lr": self.config.lr * float(group.get("lr_scale", 1.0)),
                    "weight_decay": float(group.get("weight_decay", self.config.weight_decay)),
                }
            )
        if not groups:
            raise ContractError(f"{type(self.model).__name__} has no trainable parameters.")
        # the fused kernel makes one pass over each parameter and its moments instead of about
        # ten: a 27M-parameter AdamW step on one CPU thread takes 28 ms instead of 104 ms
        params = [p for g in groups for p in g["params"]]
        fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
        return torch.optim.AdamW(
            groups, lr=self.config.lr, eps=self.config.adam_eps, fused=fused or None
        )

    def _default_callbacks(self, progress: bool) -> list[Callback]:
        cbs: list[Callback] = []
        if progress and self.dist.is_main:
            cbs.append(ProgressBar())
        if self.run_dir is not None and self.dist.is_main:
            cbs += [CSVLogger(self.run_dir / "metrics.csv"), TensorBoardLogger(self.run_dir / "tb")]
            if self.has_validation:
                cbs.append(BestModel(self.run_dir / "best"))
        if self.config.early_stopping_patience:
            cbs.append(EarlyStopping(self.config.early_stopping_patience))
        return cbs

    def _active(self) -> list[Callback]:
        return [c for c in self.callbacks if self.dist.is_main or not c.writes]

    def request_stop(self, reason: str) -> None:
        """Ask the loop to stop after the current step (used by early stopping)."""
        self.stop_reason = reason

    # -- the loop -------------------------------------------------------------------------------
    def _batch(self, split: str, seed: int | None = None) -> Batch:
        request = BatchRequest(
            batch_size=self.config.batch_size,
            seq_len=self.config.seq_len,
            split=split,  # type: ignore[arg-type]
            device=str(self.device),
            seed=seed,
            end_fraction=self.config.end_fraction if split == "train" else 0.0,
        )
        return self.data.get_batch(request)

    def _loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with torch.autocast(
            device_type=self.device.type, dtype=torch.bfloat16, enabled=self.config.bf16
        ):
            loss, components = self._forward(batch)
        return loss.float(), components

    def train_step(self) -> dict[str, float]:
        """One optimiser step; returns the step's scalars."""
        self.model.train()
        batch = self._batch("train")
        loss, components = self._loss(batch)
        finite = bool(torch.isfinite(loss.detach()))
        if not self.dist.all_true(finite):  # every rank stops together
            parts = ", ".join(f"{k}={float(v):.4g}" for k, v in components.items())
            what = (
                f"loss is {float(loss.detach())}"
                if not finite
                else "another rank's loss is not finite"
            )
            self._raise_non_finite(f"{what} at step {self.step + 1} ({parts})")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        max_norm = self.config.grad_clip if self.config.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        if not bool(torch.isfinite(grad_norm)):  # gradients are averaged: all ranks agree
            self._raise_non_finite(
                f"gradient norm is {float(grad_norm)} at step {self.step + 1} "
                f"(loss {float(loss.detach()):.4g})"
            )
        self.optimizer.step()
        self.scheduler.step()
        self.model.after_update()
        self.step += 1
        out = {"train/loss": float(loss.detach()), "train/grad_norm": float(grad_norm)}
        out.update({f"train/{k}": float(v) for k, v in components.items()})
        out["train/lr"] = float(self.optimizer.param_groups[0]["lr"])
        return out

    def _raise_non_finite(self, what: str) -> None:
        where = self.last_checkpoint or "none was written yet"
        raise NonFiniteLossError(
            f"{what}; the parameters were not updated. Last good checkpoint: {where}. "
            "Lower the learning rate or grad_clip and resume from it."
        )

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean validation loss and components over fixed held-out batches."""
        self.model.eval()
        totals: dict[str, float] = {}
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(VALIDATION_SEED)
            for i in range(self.config.eval_batches):
                loss, components = self._loss(self._batch("validation", VALIDATION_SEED + i))
                totals["val/loss"] = totals.get("val/loss", 0.0) + float(loss)
                for k, v in components.items():
                    totals[f"val/{k}"] = totals.get(f"val/{k}", 0.0) + float(v)
        self.model.train()
        return {k: v / self.config.eval_batches for k, v in totals.items()}

    def fit(self) -> dict[str, Any]:
        """Train until ``config.steps`` (or early stopping); return the final metrics.

        Sets torch's CPU thread count first (:meth:`apply_threads`); the metrics record it as
        ``threads``."""
        cfg = self.config
        if self.threads is None:  # not applied yet (train_run applies it before writing run.json)
            self.apply_threads()
        for cb in self._active():
            cb.on_train_begin(self)
        start, start_step, last_log = time.perf_counter(), self.step, time.perf_counter()
        val: dict[str, float] = {}
        try:
            while self.step < cfg.steps and self.stop_reason is None:
                metrics = self.train_step()
                logged: dict[str, float] = {}
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    now = time.perf_counter()
                    n = (
                        cfg.log_every
                        if self.step % cfg.log_every == 0
                        else self.step % cfg.log_every
                    )
                    samples = n * cfg.batch_size * cfg.seq_len * self.dist.world_size
                    logged = {**metrics, "train/samples_per_s": samples / max(now - last_log, 1e-9)}
                    last_log = now
                for cb in self._active():
                    cb.on_step_end(self, logged)  # empty between logging steps
                if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.steps:
                    val = self._run_eval()
                if (
                    cfg.checkpoint_every
                    and self.step % cfg.checkpoint_every == 0
                    and self.step < cfg.steps
                ):
                    self.save_checkpoint()
            if self.step > start_step:  # a finished run that is resumed has done this
                self.after_training = self.model.after_training(
                    self.data, seed=cfg.seed, validation=self.has_validation
                )
            if self._evaluated_at != self.step:
                val = self._run_eval()
            elif self.history:
                val = {k: v for k, v in self.history[-1].items() if k != "step"}
            if self.step > start_step:
                self._after_training_best()
            if self._checkpointed_at != self.step:
                self.save_checkpoint()
        finally:
            for cb in self._active():
                cb.on_train_end(self)
        elapsed = time.perf_counter() - start
        steps_done = self.step - start_step
        result: dict[str, Any] = {
            "steps": self.step,
            "stop_reason": self.stop_reason or "completed",
            "validation": val,
            "samples_per_s": steps_done
            * cfg.batch_size
            * cfg.seq_len
            * self.dist.world_size
            / max(elapsed, 1e-9),
            "wall_time_s": elapsed,
            "world_size": self.dist.world_size,
            "threads": self.threads,
        }
        if self.after_training:
            result["after_training"] = self.after_training
        best = next((c for c in self.callbacks if isinstance(c, BestModel)), None)
        if best is not None:
            result["best"] = best.state_dict()
        if self.run_dir is not None and self.dist.is_main:
            self.model.save_pretrained(self.run_dir / "model")
            _write_json(self.run_dir / "metrics.json", result)
        return result

    def _after_training_best(self) -> None:
        """``best/`` saved before the steps ended holds an earlier model: run the model's
        ``after_training`` on it too and save it again, so every model the run keeps has it."""
        best = next((c for c in self.callbacks if isinstance(c, BestModel)), None)
        if not (self.after_training and best is not None and self.dist.is_main):
            return
        if best.best_step in (-1, self.step):  # none, or the final evaluation saved this model
            return
        from safetensors.torch import load_file

        model = copy.deepcopy(self.model)
        model.load_state_dict(load_file(str(best.directory / WEIGHTS_FILE)))
        model.after_training(self.data, seed=self.config.seed, validation=self.has_validation)
        model.save_pretrained(best.directory)

    def _run_eval(self) -> dict[str, float]:
        self._evaluated_at = self.step
        if not self.has_validation:
            return {}
        metrics = self.evaluate()
        self.model.after_evaluation(metrics)  # before the callbacks: best/ gets updated elites
        self.history.append({"step": float(self.step), **metrics})
        for cb in self._active():
            cb.on_eval_end(self, metrics)
        return metrics

    # -- checkpoints -----------------------------------------------------------------------------
    def _rank_state(self) -> dict[str, Any]:
        """What differs between ranks: RNG streams and the sampler."""
        data_state = self.data.state_dict() if hasattr(self.data, "state_dict") else None
        return {
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "python_rng": random.getstate(),
            "numpy_rng": _jsonable(np.random.get_state(legacy=False)),
            "data": _jsonable(data_state),
        }

    def _callback_key(self, index: int) -> str:
        cb = self.callbacks[index]
        same = [c for c in self.callbacks[:index] if type(c) is type(cb)]
        return f"{type(cb).__name__}:{len(same)}"

    def save_checkpoint(self) -> Path | None:
        """Write a checkpoint (rank 0 writes every rank's RNG/sampler state; all ranks wait)."""
        self._checkpointed_at = self.step
        ranks = self.dist.gather(self._rank_state())
        path = None
        if self.run_dir is not None and self.dist.is_main:
            state = {
                "step": self.step,
                "world_size": self.dist.world_size,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "ranks": ranks,
                "callbacks": {
                    self._callback_key(i): c.state_dict() for i, c in enumerate(self.callbacks)
                },
                "config": self.config.to_dict(),
                "stop_reason": self.stop_reason,
                "after_training": self.after_training,
            }
            path = write_checkpoint(self.run_dir, self.step, self.model, state, keep=2)
            self.last_checkpoint = path
            for cb in self._active():
                cb.on_checkpoint(self, path)
        self.dist.barrier()
        return path

    def resume(self) -> bool:
        """Continue from the run's latest checkpoint; False when there is none."""
        if self.run_dir is None:
            raise ContractError("Trainer.resume() needs a run_dir.")
        path = latest_checkpoint(self.run_dir)
        if path is None:
            return False
        state = read_state(path)
        from safetensors.torch import load_file

        weights = load_file(str(path / "model" / "model.safetensors"))
        self.model.load_state_dict(self.model.upgrade_weights(weights))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        self.after_training = dict(state.get("after_training", {}))
        if int(state["world_size"]) != self.dist.world_size:
            raise ConfigError(
                f"{path} was written by {state['world_size']} processes; resume it with the same "
                f"number (this run has {self.dist.world_size}) so every rank gets its stream back."
            )
        mine = state["ranks"][self.dist.rank]
        torch.set_rng_state(mine["torch_rng"])
        if mine["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(mine["cuda_rng"])
        random.setstate(_tupled(mine["python_rng"]))
        numpy_state = mine["numpy_rng"]
        numpy_state["state"]["key"] = np.asarray(numpy_state["state"]["key"], dtype=np.uint32)
        np.random.set_state(numpy_state)
        if mine["data"] is not None and hasattr(self.data, "load_state_dict"):
            self.data.load_state_dict(mine["data"])
        saved_callbacks = state["callbacks"]
        for i, cb in enumerate(self.callbacks):
            key = self._callback_key(i)
            if key in saved_callbacks:
                cb.load_state_dict(saved_callbacks[key])
        self.stop_reason = state["stop_reason"]
        self.last_checkpoint = path
        self._checkpointed_at = self.step
        return True


def _jsonable(obj: Any) -> Any:
    """numpy scalars/arrays -> Python values, so ``weights_only`` loading accepts the state."""
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _tupled(obj: Any) -> Any:
    return tuple(_tupled(v) for v in obj) if isinstance(obj, list | tuple) else obj


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=float) + "\n")
    tmp.replace(path)
