"""`TrainerConfig`: every training knob, each one used by the Trainer."""

from __future__ import annotations

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
    """

    steps: int = 10_000
    batch_size: int = 16
    seq_len: int = 64
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

    def __post_init__(self) -> None:
        positive = ("steps", "batch_size", "seq_len", "log_every", "eval_batches")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"TrainerConfig.{name}: expected >= 1, got {getattr(self, name)}."
                )
        nonneg = (
            "weight_decay",
            "grad_clip",
            "warmup_steps",
            "eval_every",
            "checkpoint_every",
            "early_stopping_patience",
        )
        for name in nonneg:
            if getattr(self, name) < 0:
                raise ConfigError(
                    f"TrainerConfig.{name}: expected >= 0, got {getattr(self, name)}."
                )
        if self.lr <= 0:
            raise ConfigError(f"TrainerConfig.lr: expected > 0, got {self.lr}.")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ConfigError(
                f"TrainerConfig.lr_schedule: expected 'constant' or 'cosine', got {self.lr_schedule!r}."
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
        import math

        if self.warmup_steps and step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.lr_schedule == "cosine":
            span = max(self.steps - self.warmup_steps, 1)
            progress = min(max(step - self.warmup_steps, 0) / span, 1.0)
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0
