"""Standardisation statistics handed to the families by ``set_data_statistics``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..core.errors import ContractError


def _copy_statistics(
    stats: Mapping[str, Any],
    buffers: Mapping[str, torch.Tensor],
    *,
    std_key: str,
    min_std: float,
    hint: str,
) -> None:
    """Copy ``stats[key]`` into each of ``buffers`` (by key, shapes checked), the values of
    ``std_key`` floored at ``min_std``; ``hint`` ends the message of a missing key.

    Raises:
        ContractError: a key missing or of another shape than its buffer's.
    """
    for key, buffer in buffers.items():
        shape = list(buffer.shape)
        value = stats.get(key)
        if value is None:
            raise ContractError(
                f"set_data_statistics: expected {key!r} of shape {shape}, got None ({hint})."
            )
        t = torch.as_tensor(np.asarray(value, dtype=np.float32))
        if list(t.shape) != shape:
            raise ContractError(
                f"set_data_statistics: {key!r} expected shape {shape}, got {list(t.shape)}."
            )
        buffer.copy_(t.clamp(min=min_std) if key == std_key else t)


def copy_obs_statistics(
    stats: Mapping[str, Any],
    obs_mean: torch.Tensor,
    obs_std: torch.Tensor,
    *,
    min_std: float,
    hint: str,
) -> None:
    """Copy ``stats["obs_mean"]`` / ``stats["obs_std"]`` (``[O]`` each) into the buffers, the
    standard deviations floored at ``min_std``; ``hint`` ends the message of a missing key.

    Raises:
        ContractError: a key missing or of another shape than the buffer's ``[O]``.
    """
    buffers = {"obs_mean": obs_mean, "obs_std": obs_std}
    _copy_statistics(stats, buffers, std_key="obs_std", min_std=min_std, hint=hint)


def copy_image_statistics(
    stats: Mapping[str, Any],
    image_mean: torch.Tensor,
    image_std: torch.Tensor,
    *,
    min_std: float,
) -> None:
    """Copy ``stats["image_mean"]`` (``[C, H, W]``, pixel / 255 units) and
    ``stats["image_std"]`` (``[C]``) into the buffers, the standard deviations floored at
    ``min_std``.

    Raises:
        ContractError: a key missing or of another shape than the buffer's.
    """
    buffers = {"image_mean": image_mean, "image_std": image_std}
    _copy_statistics(
        stats, buffers, std_key="image_std", min_std=min_std, hint="for image observations"
    )
