"""Which Gymnasium spaces the data layer supports, and how their values become model tensors.

* Observations: ``Box`` with 1 dimension (vector, stored float32) or a ``uint8`` ``Box`` of shape
  ``(H, W, C)`` (image, stored ``(C, H, W)`` uint8; models scale it).
* Actions: ``Box`` with 1 dimension (float32) or ``Discrete(n)`` (one-hot float32 of size n).

Anything else raises :class:`UnsupportedSpaceError` naming the space and what would work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from gymnasium import spaces

from ..core.errors import WorldFluxError


class UnsupportedSpaceError(WorldFluxError, TypeError):
    """A dataset's observation or action space is not one the data layer handles."""


@dataclass(frozen=True)
class ObservationLayout:
    """How observations are stored and handed to models.

    Attributes:
        kind: ``"vector"`` (float32 ``[D]``) or ``"image"`` (uint8 ``[C, H, W]``).
        shape: per-sample shape as models see it (CHW for images).
    """

    kind: Literal["vector", "image"]
    shape: tuple[int, ...]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8) if self.kind == "image" else np.dtype(np.float32)

    def convert(self, observations: np.ndarray) -> np.ndarray:
        """``[N, *space.shape]`` as stored by Minari -> ``[N, *self.shape]`` in :attr:`dtype`."""
        if self.kind == "image":
            return np.ascontiguousarray(observations.transpose(0, 3, 1, 2), dtype=np.uint8)
        return np.ascontiguousarray(observations, dtype=np.float32)


@dataclass(frozen=True)
class ActionLayout:
    """How actions are stored: ``"continuous"`` float32 ``[A]`` or ``"discrete"`` one-hot ``[n]``."""

    kind: Literal["continuous", "discrete"]
    dim: int

    def convert(self, actions: np.ndarray) -> np.ndarray:
        """``[N]`` indices or ``[N, A]`` values -> float32 ``[N, dim]``."""
        if self.kind == "discrete":
            index = np.asarray(actions).reshape(-1).astype(np.int64)
            if index.size and (index.min() < 0 or index.max() >= self.dim):
                raise ValueError(
                    f"discrete actions must lie in [0, {self.dim}), got values in "
                    f"[{index.min()}, {index.max()}]."
                )
            out = np.zeros((index.size, self.dim), dtype=np.float32)
            out[np.arange(index.size), index] = 1.0
            return out
        return np.ascontiguousarray(np.asarray(actions).reshape(-1, self.dim), dtype=np.float32)


def observation_layout(space: spaces.Space) -> ObservationLayout:
    """Layout for a supported observation space; raises :class:`UnsupportedSpaceError` otherwise."""
    if isinstance(space, spaces.Box):
        if len(space.shape) == 1:
            return ObservationLayout("vector", (int(space.shape[0]),))
        if len(space.shape) == 3 and space.dtype == np.uint8:
            h, w, c = (int(s) for s in space.shape)
            return ObservationLayout("image", (c, h, w))
    raise UnsupportedSpaceError(
        f"Unsupported observation space {space}: expected Box of shape (D,) (vector) or a uint8 "
        "Box of shape (H, W, C) (image). Flatten dict/tuple observations (e.g. gymnasium.wrappers."
        "FlattenObservation) before collecting."
    )


def action_layout(space: spaces.Space) -> ActionLayout:
    """Layout for a supported action space; raises :class:`UnsupportedSpaceError` otherwise."""
    if isinstance(space, spaces.Box) and len(space.shape) == 1:
        return ActionLayout("continuous", int(space.shape[0]))
    if isinstance(space, spaces.Discrete) and int(space.start) == 0:
        return ActionLayout("discrete", int(space.n))
    raise UnsupportedSpaceError(
        f"Unsupported action space {space}: expected Box of shape (A,) or Discrete(n) starting at 0."
    )
