"""Explicit noise: how a model's randomness is exposed so callers can supply it.

A stochastic model declares ``noise_spec()``: ``{name: NoiseSpec}`` with per-sample shapes.
``transition(..., noise={name: Tensor[B, *shape]})`` then uses that noise instead of drawing its
own, so a dream environment can draw it from its seeded ``np_random`` and an ONNX graph can take it
as an input: the same noise gives the same trajectory on every backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from .errors import ContractError

if TYPE_CHECKING:  # torch is imported where it is used: NoiseSpec is part of the torch-free runtime
    import torch

NoiseDistribution = Literal["normal", "uniform"]


@dataclass(frozen=True)
class NoiseSpec:
    """One noise input.

    Attributes:
        shape: per-sample shape (without the batch dimension).
        distribution: ``"normal"`` (standard normal) or ``"uniform"`` (on [0, 1)).
    """

    shape: tuple[int, ...]
    distribution: NoiseDistribution = "normal"

    def __post_init__(self) -> None:
        if self.distribution not in ("normal", "uniform"):
            raise ContractError(
                f"NoiseSpec.distribution: expected 'normal' or 'uniform', got {self.distribution!r}."
            )


def sample_noise_torch(
    spec: Mapping[str, NoiseSpec],
    batch_shape: tuple[int, ...],
    *,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Draw ``{name: Tensor[*batch_shape, *shape]}`` with torch (float32)."""
    import torch

    out: dict[str, torch.Tensor] = {}
    for name, s in spec.items():
        size = (*batch_shape, *s.shape)
        if s.distribution == "normal":
            out[name] = torch.randn(size, device=device, generator=generator)
        else:
            out[name] = torch.rand(size, device=device, generator=generator)
    return out


def sample_noise_numpy(
    spec: Mapping[str, NoiseSpec], batch_shape: tuple[int, ...], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Draw ``{name: ndarray[*batch_shape, *shape]}`` float32 from a numpy Generator."""
    out: dict[str, np.ndarray] = {}
    for name, s in spec.items():
        size = (*batch_shape, *s.shape)
        if s.distribution == "normal":
            out[name] = rng.standard_normal(size, dtype=np.float32)
        else:
            out[name] = rng.random(size, dtype=np.float32)
    return out


def check_noise(
    spec: Mapping[str, NoiseSpec],
    noise: Mapping[str, torch.Tensor],
    batch_shape: tuple[int | str, ...],
    owner: str = "noise",
) -> None:
    """Check that ``noise`` has exactly the keys of ``spec`` with shapes ``[*batch, *shape]``."""
    from .shapes import check_shape

    if set(noise) != set(spec):
        raise ContractError(f"{owner}: expected keys {sorted(spec)}, got {sorted(noise)}.")
    for name, s in spec.items():
        check_shape(owner, name, noise[name], (*batch_shape, *s.shape))
