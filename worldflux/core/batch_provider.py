"""Data contracts: where training batches come from.

Two protocols, so simple sources stay simple and richer ones can grow:

* :class:`BatchProvider` - ``sample(batch_size, seq_len) -> Batch``.
* :class:`BatchProviderV2` - ``get_batch(BatchRequest) -> Batch``; the request also names the
  split (train / validation) and the device.

A provider may implement both. Batches follow the time alignment of
:mod:`worldflux.core.payloads`: ``obs [B, T+1, *O]``, ``actions [B, T, A]``, ``rewards [B, T]``,
``terminations [B, T]``, ``truncations [B, T]``, optional ``mask [B, T]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import torch

from .errors import ConfigError
from .payloads import Batch

Split = Literal["train", "validation"]


@dataclass(frozen=True)
class BatchRequest:
    """What a :class:`BatchProviderV2` is asked for.

    Attributes:
        batch_size: B, number of sequences.
        seq_len: T, transitions per sequence (1 for one-step models).
        split: ``"train"`` or ``"validation"`` (episodes held out from training).
        device: where the batch tensors should live (None: the provider's default).
        seed: draw this batch from a fresh generator seeded with ``seed`` instead of the
            provider's running stream (fixed validation batches; the stream is not advanced).
        end_fraction: share of the sequences (rounded to a count) drawn to hold an episode's
            termination, at a uniformly drawn position inside the window; the rest start
            anywhere. Terminations are rare in most logs (one in a few hundred steps), and a
            model learns to predict them from far more examples this way. 0: every start is
            uniform.
    """

    batch_size: int
    seq_len: int = 1
    split: Split = "train"
    device: str | None = None
    seed: int | None = None
    end_fraction: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(
                f"BatchRequest.batch_size: expected an int >= 1, got {self.batch_size!r}."
            )
        if not isinstance(self.seq_len, int) or self.seq_len < 1:
            raise ConfigError(f"BatchRequest.seq_len: expected an int >= 1, got {self.seq_len!r}.")
        if not isinstance(self.end_fraction, (int, float)) or not 0 <= self.end_fraction <= 1:
            raise ConfigError(
                f"BatchRequest.end_fraction: expected a share in [0, 1], got {self.end_fraction!r}."
            )
        if self.split not in ("train", "validation"):
            raise ConfigError(
                f"BatchRequest.split: expected 'train' or 'validation', got {self.split!r}."
            )
        if self.device is not None:
            try:
                torch.device(self.device)
            except (RuntimeError, TypeError) as exc:
                raise ConfigError(f"BatchRequest.device: {exc}") from None


@runtime_checkable
class BatchProvider(Protocol):
    """Minimal data source: training sequences on demand."""

    def sample(self, batch_size: int, seq_len: int = 1) -> Batch:
        """``batch_size`` training sequences of ``seq_len`` transitions."""
        ...


@runtime_checkable
class BatchProviderV2(Protocol):
    """Data source answering a :class:`BatchRequest` (split, device)."""

    def get_batch(self, request: BatchRequest) -> Batch:
        """A batch as the request describes."""
        ...
