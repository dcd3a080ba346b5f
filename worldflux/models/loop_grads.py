"""Weight gradients of Linear layers inside a recurrent loop, computed once per sequence.

Backpropagation through a Python time loop computes the weight gradient of every ``nn.Linear``
used in the loop once per step: for a batch of ``B`` rows that is ``T`` outer products
``g_t^T x_t`` of shape ``[out, in]``, each written out and added to the running sum. With small
``B`` and large layers this traffic, not arithmetic, dominates a training step on a CPU.
Within :func:`deferred_weight_grads` the loop's steps only propagate input gradients; the
weight and bias gradients of each layer are formed after the whole loop has been
backpropagated, as one matrix product over all ``T·B`` rows: ``dW = G^T X``, ``db = sum(G)``.
The result is the same sum (up to float rounding order).

Under ``torch.autocast`` each step computes as autocast would (the layer in the autocast dtype)
and the deferred product runs in the dtype of the step gradients; the gradients reach the
parameters in their own dtype, as with autocast's own backward.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class _Tape:
    """Inputs ``[B, in]`` and output gradients ``[B, out]`` of one layer's steps."""

    def __init__(self, linear: nn.Linear) -> None:
        self.linear = linear
        self.inputs: list[torch.Tensor] = []
        self.grads: dict[int, torch.Tensor] = {}
        self._weights: dict[torch.dtype, torch.Tensor] = {}

    def weight(self, dtype: torch.dtype) -> torch.Tensor:
        """The layer's weight (detached) in ``dtype``, cast once per block, not per step."""
        if dtype not in self._weights:
            self._weights[dtype] = self.linear.weight.detach().to(dtype)
        return self._weights[dtype]


class _Anchor(torch.autograd.Function):
    """A zero scalar that every step's output depends on: its backward runs once every step's
    backward has, and turns the tape into the weight and bias gradients."""

    @staticmethod
    def forward(
        ctx: Any, weight: torch.Tensor, bias: torch.Tensor | None, tape: _Tape
    ) -> torch.Tensor:
        ctx.tape = tape
        ctx.has_bias = bias is not None
        return weight.new_zeros(())

    @staticmethod
    def backward(ctx: Any, _: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        tape: _Tape = ctx.tape
        steps = sorted(tape.grads)
        if not steps:
            return None, None, None
        grads = torch.cat([tape.grads[i] for i in steps])  # [S*B, out]
        inputs = torch.cat([tape.inputs[i] for i in steps]).to(grads.dtype)  # [S*B, in]
        tape.grads.clear()
        tape.inputs.clear()
        tape._weights.clear()
        weight = tape.linear.weight
        d_weight = (grads.t() @ inputs).to(weight.dtype)
        d_bias = grads.sum(0).to(weight.dtype) if ctx.has_bias else None
        return d_weight, d_bias, None


class _Step(torch.autograd.Function):
    """``y = x W^T + b`` for one step; backward gives ``dx`` and records ``dy`` on the tape."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu")
    def forward(
        ctx: Any, x: torch.Tensor, anchor: torch.Tensor, tape: _Tape, index: int
    ) -> torch.Tensor:
        ctx.tape, ctx.index = tape, index
        linear = tape.linear
        dtype = linear.weight.dtype
        if torch.is_autocast_enabled("cpu"):
            dtype = torch.get_autocast_dtype("cpu")
        bias = None if linear.bias is None else linear.bias.detach().to(dtype)
        x = x.to(dtype)
        tape.inputs.append(x.detach())
        with torch.autocast("cpu", enabled=False):
            return F.linear(x, tape.weight(dtype), bias)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        tape: _Tape = ctx.tape
        tape.grads[ctx.index] = grad.reshape(-1, grad.shape[-1])
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = grad @ tape.weight(grad.dtype)
        return grad_x, grad.new_zeros(()), None, None


class _DeferredLinear:
    """Stands in for an ``nn.Linear``'s forward inside :func:`deferred_weight_grads`."""

    def __init__(self, linear: nn.Linear) -> None:
        self.tape = _Tape(linear)
        self.anchor = _Anchor.apply(linear.weight, linear.bias, self.tape)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2:
            raise ValueError(
                f"deferred_weight_grads: expected inputs [B, in] inside the loop, got shape "
                f"{list(x.shape)}."
            )
        out: torch.Tensor = _Step.apply(x, self.anchor, self.tape, len(self.tape.inputs))
        return out


@contextmanager
def deferred_weight_grads(linears: Sequence[nn.Linear]) -> Iterator[None]:
    """Within the block, ``linears`` compute as usual but their weight and bias gradients are
    formed once over all their calls (see the module docstring). Does nothing when gradients
    are disabled or the weights do not require them. One backward pass per block."""
    active = torch.is_grad_enabled() and all(lin.weight.requires_grad for lin in linears)
    if not active:
        yield
        return
    for lin in linears:
        lin.forward = _DeferredLinear(lin)  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        for lin in linears:
            del lin.forward  # back to the class's forward
