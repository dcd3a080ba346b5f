"""`State`: the latent state a world model carries between steps.

A state is a dictionary of batch-first tensors plus free-form metadata. Keys are model-specific
(an RSSM has ``deter`` [B, D] and ``stoch`` [B, S]; an ensemble has ``obs`` [B, *obs_shape]);
a model declares them with :meth:`WorldModel.state_spec` and :meth:`State.require` checks them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .errors import ContractError
from .shapes import DimSpec, check_shape, format_shape


@dataclass
class State:
    """Batch-first latent state.

    Attributes:
        tensors: ``{key: Tensor[B, ...]}``; every tensor shares the leading batch size B.
        meta: JSON-like metadata (e.g. ``{"step": 3}``); never holds tensors needed for compute.
    """

    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.tensors, Mapping):
            raise ContractError(
                f"State.tensors: expected a dict of tensors, got {type(self.tensors).__name__}."
            )
        self.tensors = dict(self.tensors)
        first: int | None = None
        mismatch = False
        for key, value in self.tensors.items():
            if not isinstance(value, torch.Tensor):
                raise ContractError(
                    f"State[{key!r}]: expected a torch.Tensor, got {type(value).__name__}."
                )
            if value.dim() == 0:
                raise ContractError(
                    f"State[{key!r}]: expected a batch-first tensor [B, ...], got a scalar."
                )
            # sizes stay as they are (not int()): symbolic while a model is exported to ONNX
            size = value.shape[0]
            if first is None:
                first = size
            elif size != first:
                mismatch = True
        if mismatch:
            detail = ", ".join(f"{k!r}: {format_shape(v.shape)}" for k, v in self.tensors.items())
            raise ContractError(
                f"State: all tensors must share the batch size (dim 0), got {detail}."
            )

    # -- access -----------------------------------------------------------------------------
    def __getitem__(self, key: str) -> torch.Tensor:
        try:
            return self.tensors[key]
        except KeyError:
            raise ContractError(
                f"State is missing key {key!r}; it has {sorted(self.tensors)}."
            ) from None

    def __contains__(self, key: object) -> bool:
        return key in self.tensors

    def __iter__(self) -> Iterator[str]:
        return iter(self.tensors)

    def keys(self) -> list[str]:
        return list(self.tensors)

    @property
    def batch_size(self) -> int:
        """Leading dimension shared by all tensors (0 for an empty state)."""
        for value in self.tensors.values():
            return value.shape[0]
        return 0

    @property
    def device(self) -> torch.device:
        for value in self.tensors.values():
            return value.device
        return torch.device("cpu")

    def require(
        self,
        spec: Mapping[str, Sequence[DimSpec]],
        *,
        owner: str = "State",
    ) -> State:
        """Check that every key of ``spec`` is present with trailing shape ``spec[key]``.

        ``spec`` maps a key to its per-sample shape (without the batch dimension), e.g.
        ``{"deter": (512,), "stoch": (32, 16)}``. Returns ``self`` for chaining.
        """
        missing = [key for key in spec if key not in self.tensors]
        if missing:
            raise ContractError(
                f"{owner} is missing key(s) {missing}; expected keys {sorted(spec)}, "
                f"got {sorted(self.tensors)}."
            )
        dims: dict[str, int] = {}
        for key, trailing in spec.items():
            check_shape(owner, key, self.tensors[key], ("B", *trailing), dims)
        return self

    # -- transforms -------------------------------------------------------------------------
    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> State:
        """Apply ``fn`` to every tensor; metadata is copied."""
        return State({k: fn(v) for k, v in self.tensors.items()}, dict(self.meta))

    def to(self, device: torch.device | str) -> State:
        return self.map(lambda t: t.to(device))

    def detach(self) -> State:
        return self.map(torch.Tensor.detach)

    def index(self, idx: torch.Tensor | slice | int) -> State:
        """Select batch rows (keeps the batch dimension for an int index)."""
        if isinstance(idx, int):
            idx = slice(idx, idx + 1)
        return self.map(lambda t: t[idx])

    @staticmethod
    def stack(states: Sequence[State], dim: int = 0) -> State:
        """Stack states with identical keys along a new dimension (e.g. time-major [T, B, ...])."""
        if not states:
            raise ContractError("State.stack: expected at least one state, got none.")
        keys = states[0].keys()
        for i, s in enumerate(states):
            if s.keys() != keys:
                raise ContractError(f"State.stack: state {i} has keys {s.keys()}, expected {keys}.")
        return State(
            {k: torch.stack([s.tensors[k] for s in states], dim=dim) for k in keys},
            dict(states[0].meta),
        )

    @staticmethod
    def cat(states: Sequence[State]) -> State:
        """Concatenate states along the batch dimension."""
        if not states:
            raise ContractError("State.cat: expected at least one state, got none.")
        keys = states[0].keys()
        for i, s in enumerate(states):
            if s.keys() != keys:
                raise ContractError(f"State.cat: state {i} has keys {s.keys()}, expected {keys}.")
        return State({k: torch.cat([s.tensors[k] for s in states]) for k in keys})
