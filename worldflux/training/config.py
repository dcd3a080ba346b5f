"""`TrainerConfig`: every training knob, each one used by the Trainer."""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from ..core.errors import ConfigError, unknown_name_message


@dataclass
class TrainerConfig:
    """Training settings.

    Attributes:
        steps: optimiser steps in total.
        batch_size: sequences per step (per process under torchrun; the global batch is
            ``batch_size x world size``).
        seq_len: transitions per sequence (1 for one-step models).
        end_fraction: share of each training batch's sequences drawn to hold an episode's
            termination (:class:`~worldflux.core.batch_provider.BatchRequest`); validation
            batches stay uniform. 0: uniform.
        lr: peak learning rate (scaled per group by a model's ``lr_scale``).
        weight_decay: AdamW weight decay (a group's own ``weight_decay`` wins).
        adam_eps: AdamW epsilon.
        grad_clip: clip the global gradient norm to this (0: no clipping).
        warmup_steps: linear warm-up from 0 to ``lr``.
        lr_schedule: after warm-up, ``"constant"`` or ``"cosine"`` decay to 0 at ``steps``.
        seed: seeds torch, numpy sampling and Python's ``random``.
        bf16: run ``loss()`` under ``torch.autocast(dtype=bfloat16)``.
        log_every: steps between logged training scalars.
        eval_every: steps between validation evaluations (0: only at the end).
        eval_batches: validation batches per evaluation.
        checkpoint_every: steps between checkpoints (0: only at the end).
        early_stopping_patience: stop after this many evaluations without a better validation
            loss (0: never stop early).
        device: torch device (``"cuda"`` under torchrun uses the local rank's GPU).
        threads: torch's intra-op CPU threads while training: ``"auto"`` or a count >= 1.
            ``"auto"`` leaves torch's count alone when ``OMP_NUM_THREADS`` is set (torchrun sets
            it to 1 per process), else uses half the CPUs (at least 1): a step with every core
            busy slows down several times as soon as another process wants a core, while one
            thread fewer costs little on an idle machine (``benchmarks/results/threads.md``).
            Applied when :meth:`Trainer.fit` starts (``torch.set_num_threads`` is process-wide);
            see :func:`resolve_threads`.
    """

    steps: int = 10_000
    batch_size: int = 16
    seq_len: int = 64
    end_fraction: float = 0.0
    lr: float = 3e-4
    weight_decay: float = 0.0
    adam_eps: float = 1e-8
    grad_clip: float = 100.0
    warmup_steps: int = 0
    lr_schedule: Literal["constant", "cosine"] = "constant"
    seed: int = 0
    bf16: bool = False
    log_every: int = 50
    eval_every: int = 1000
    eval_batches: int = 8
    checkpoint_every: int = 1000
    early_stopping_patience: int = 0
    device: str = "cpu"
    threads: int | Literal["auto"] = "auto"

    def __post_init__(self) -> None:
        """Check every setting: types, ranges, and no NaN or infinity anywhere."""
        for name, minimum in _INT_FIELDS.items():
            setattr(self, name, _check_int(name, getattr(self, name), minimum))
        for name, (bound, inclusive) in _FLOAT_FIELDS.items():
            setattr(self, name, _check_float(name, getattr(self, name), bound, inclusive))
        if not 0 <= self.end_fraction <= 1:
            raise ConfigError(
                f"TrainerConfig.end_fraction: expected a share in [0, 1], got {self.end_fraction}."
            )
        if self.lr_schedule not in ("constant", "cosine"):
            raise ConfigError(
                f"TrainerConfig.lr_schedule: expected 'constant' or 'cosine', got {self.lr_schedule!r}."
            )
        if not isinstance(self.bf16, bool):
            raise ConfigError(f"TrainerConfig.bf16: expected true or false, got {self.bf16!r}.")
        self.threads = _check_threads(self.threads)
        if not isinstance(self.device, str) or not self.device:
            raise ConfigError(
                f"TrainerConfig.device: expected a torch device name such as 'cpu' or 'cuda', "
                f"got {self.device!r}."
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainerConfig:
        known = [f.name for f in fields(cls)]
        for key in data:
            if key not in known:
                raise ConfigError(unknown_name_message("TrainerConfig field", key, known))
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lr_factor(self, step: int) -> float:
        """Multiplier of ``lr`` at optimiser step ``step`` (0-based)."""
        if self.warmup_steps and step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.lr_schedule == "cosine":
            span = max(self.steps - self.warmup_steps, 1)
            progress = min(max(step - self.warmup_steps, 0) / span, 1.0)
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0


#: Integer settings with their smallest allowed value (None: any integer).
_INT_FIELDS: dict[str, int | None] = {
    "steps": 1,
    "batch_size": 1,
    "seq_len": 1,
    "warmup_steps": 0,
    "seed": None,
    "log_every": 1,
    "eval_every": 0,
    "eval_batches": 1,
    "checkpoint_every": 0,
    "early_stopping_patience": 0,
}
#: Floating-point settings: (bound, whether the bound itself is allowed).
_FLOAT_FIELDS: dict[str, tuple[float, bool]] = {
    "lr": (0.0, False),
    "end_fraction": (0.0, True),
    "weight_decay": (0.0, True),
    "adam_eps": (0.0, False),
    "grad_clip": (0.0, True),
}


def _check_int(name: str, value: Any, minimum: int | None) -> int:
    """``value`` as an ``int``; :class:`ConfigError` unless it is an integer (numpy's too, not a
    bool) of at least ``minimum``."""
    is_int = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if is_int and (minimum is None or value >= minimum):
        return int(value)
    expected = "an integer" + ("" if minimum is None else f" >= {minimum}")
    raise ConfigError(f"TrainerConfig.{name}: expected {expected}, got {value!r}.")


def _check_threads(value: Any) -> int | Literal["auto"]:
    """``value`` as a thread setting; :class:`ConfigError` unless it is ``"auto"`` or an integer
    (not a bool) of at least 1."""
    if value == "auto" and isinstance(value, str):
        return "auto"
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) >= 1:
        return int(value)
    raise ConfigError(f"TrainerConfig.threads: expected 'auto' or an integer >= 1, got {value!r}.")


def resolve_threads(setting: int | Literal["auto"]) -> tuple[int | None, str]:
    """The intra-op thread count ``setting`` asks for, and why, as ``(count, reason)``.

    ``count`` is None when torch's own count is to be kept: ``"auto"`` with ``OMP_NUM_THREADS``
    set in the environment (the user's or torchrun's choice). Otherwise ``"auto"`` is half of
    ``os.cpu_count()``, at least 1, and an integer is itself.
    """
    if setting != "auto":
        count = _check_threads(setting)
        return int(count), f"threads={count}"
    given = os.environ.get("OMP_NUM_THREADS", "").strip()
    if given:
        return None, f"auto: OMP_NUM_THREADS={given} is set"
    cpus = os.cpu_count() or 1
    return max(1, cpus // 2), f"auto: half of {cpus} CPUs"


def _check_float(name: str, value: Any, bound: float, inclusive: bool) -> float:
    """``value`` as a ``float``; :class:`ConfigError` unless it is a finite number above
    ``bound`` (or equal to it when ``inclusive``). NaN and infinities never pass: ``nan < 0`` is
    False, so a plain comparison would let NaN through and, e.g., silently turn gradient clipping
    off."""
    is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    finite = is_number and math.isfinite(value)
    if finite and (value > bound or (inclusive and value == bound)):
        return float(value)
    expected = f"a finite number {'>=' if inclusive else '>'} {bound:g}"
    raise ConfigError(f"TrainerConfig.{name}: expected {expected}, got {value!r}.")
