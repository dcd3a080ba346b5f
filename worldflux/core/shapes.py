"""Shape and dtype checks that produce errors naming the key, the expected and the given.

A *pattern* is a sequence of dimension specs:

* ``int`` - that exact size;
* ``"B"`` (any identifier) - a symbolic size, bound by its first occurrence and checked after;
* ``"T+1"`` - a symbolic size plus a constant;
* ``"*"`` - any number (zero or more) of dimensions; at most one per pattern.

Example: ``check_shape("Batch", "actions", t, ("B", "T", "A"), dims)``.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence

import torch

from .errors import ContractError

DimSpec = int | str


def format_shape(shape: Sequence[int] | torch.Size) -> str:
    """``(2, 3)`` -> ``"[2, 3]"``."""
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def _describe(pattern: Sequence[DimSpec], dims: MutableMapping[str, int]) -> str:
    parts: list[str] = []
    for spec in pattern:
        if not isinstance(spec, str) or spec == "*":
            parts.append(str(spec))
            continue
        symbol, offset = _parse(spec)
        if symbol in dims:
            parts.append(f"{spec}={dims[symbol] + offset}")
        else:
            parts.append(spec)
    return "[" + ", ".join(parts) + "]"


def _parse(spec: str) -> tuple[str, int]:
    if "+" in spec:
        symbol, offset = spec.split("+", 1)
        return symbol.strip(), int(offset)
    return spec, 0


def check_shape(
    owner: str,
    key: str,
    tensor: object,
    pattern: Sequence[DimSpec],
    dims: MutableMapping[str, int] | None = None,
) -> torch.Tensor:
    """Check ``tensor`` against ``pattern``; bind new symbols into ``dims``; return the tensor.

    Raises:
        ContractError: naming ``owner.key``, the expected pattern (with bound sizes) and the
            given shape and dtype.
    """
    dims = {} if dims is None else dims
    if not isinstance(tensor, torch.Tensor):
        raise ContractError(
            f"{owner}.{key}: expected a torch.Tensor of shape {_describe(pattern, dims)}, "
            f"got {type(tensor).__name__}."
        )
    shape = tuple(tensor.shape)
    n_star = sum(1 for s in pattern if s == "*")
    if n_star > 1:
        raise ValueError(f"pattern {pattern!r} has more than one '*'")

    def fail() -> ContractError:
        return ContractError(
            f"{owner}.{key}: expected shape {_describe(pattern, dims)}, "
            f"got {format_shape(shape)} ({tensor.dtype})."
        )

    if n_star == 0:
        if len(shape) != len(pattern):
            raise fail()
        pairs = list(zip(pattern, shape, strict=True))
    else:
        star = list(pattern).index("*")
        head, tail = list(pattern[:star]), list(pattern[star + 1 :])
        if len(shape) < len(head) + len(tail):
            raise fail()
        tail_shape = shape[len(shape) - len(tail) :] if tail else ()
        pairs = list(zip(head, shape[: len(head)], strict=True))
        pairs += list(zip(tail, tail_shape, strict=True))

    for spec, size in pairs:
        if not isinstance(spec, str):  # an int (or a symbolic size while exporting)
            if size != spec:
                raise fail()
            continue
        symbol, offset = _parse(spec)
        if symbol in dims:
            if size != dims[symbol] + offset:
                raise fail()
        else:
            dims[symbol] = size - offset
    return tensor


def check_floating(owner: str, key: str, tensor: torch.Tensor) -> torch.Tensor:
    """Require a floating-point dtype."""
    if not tensor.is_floating_point():
        raise ContractError(
            f"{owner}.{key}: expected a floating-point tensor, got dtype {tensor.dtype}."
        )
    return tensor


def check_finite(owner: str, key: str, tensor: torch.Tensor) -> torch.Tensor:
    """Require no NaN or infinity (for floating tensors)."""
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        n_bad = int((~torch.isfinite(tensor)).sum())
        raise ContractError(
            f"{owner}.{key}: expected finite values, got {n_bad} NaN/inf entries "
            f"in a tensor of shape {format_shape(tensor.shape)}."
        )
    return tensor
