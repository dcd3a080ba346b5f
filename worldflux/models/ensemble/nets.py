"""Batched ensemble layers: every member's weights in one tensor, one matmul for all members.

Shapes: N = members (or the subset being run), R = rows per member, I / O = input / output size.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn


class EnsembleLinear(nn.Module):
    """N independent affine maps ``y_n = x_n W_n + b_n`` computed as one ``torch.baddbmm``.

    Attributes:
        weight: ``[N, I, O]``.
        bias: ``[N, 1, O]``.

    Running a subset of members gathers their weights. In eval mode and without gradients
    (imagination, planning) the gathered weights are kept for the next call with the same
    ``members`` tensor (e.g. the elites buffer), until a weight, a bias or ``members`` changes
    (in place or replaced) or the mode is switched: a planner's small batches otherwise spend
    about a third of their time copying weights. Fused optimisers update weights in place
    without bumping their version counters; training runs in train mode, which keeps nothing,
    so a model switched back to eval gathers afresh.
    """

    def __init__(self, members: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(members, 1, out_features))
        # truncated normal, std 1 / (2 sqrt(I)), as for MBPO's ensembles
        std = 1.0 / (2.0 * math.sqrt(in_features))
        nn.init.trunc_normal_(self.weight, std=std, a=-2 * std, b=2 * std)
        self._selected: tuple[torch.Tensor, tuple[object, ...], torch.Tensor, torch.Tensor] | None
        self._selected = None

    def _select(self, members: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weight[members], bias[members])``, reused while nothing they depend on changed."""
        if (
            self.training
            or torch.is_grad_enabled()
            or torch.compiler.is_compiling()
            or torch.compiler.is_exporting()
        ):
            return self.weight[members], self.bias[members]
        key = tuple(
            (t.data_ptr(), t._version, t.dtype, t.device) for t in (self.weight, self.bias, members)
        )
        cached = self._selected
        if cached is not None and cached[0] is members and cached[1] == key:
            return cached[2], cached[3]
        weight, bias = self.weight[members], self.bias[members]
        self._selected = (members, key, weight, bias)
        return weight, bias

    def train(self, mode: bool = True) -> EnsembleLinear:
        self._selected = None  # see the class docstring: weights may have changed unseen
        return super().train(mode)

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        """``x [N', R, I] -> [N', R, O]``; ``members [N']`` (long) selects which members run
        (all N, in order, when None)."""
        if members is None:
            return torch.baddbmm(self.bias, x, self.weight)
        weight, bias = self._select(members)
        return torch.baddbmm(bias, x, weight)

    def forward_loop(self, x: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
        """The same result one member at a time (reference for tests and benchmarks)."""
        return torch.stack(
            [x[i] @ self.weight[int(m)] + self.bias[int(m), 0] for i, m in enumerate(members)]
        )


class EnsembleMLP(nn.Module):
    """N MLPs ``I -> hidden (x layers, SiLU) -> O`` evaluated together.

    ``forward(x [N', R, I], members [N'] | None) -> [N', R, O]``.
    """

    def __init__(
        self, members: int, in_features: int, hidden: int, layers: int, out_features: int
    ) -> None:
        super().__init__()
        sizes = [in_features] + [hidden] * layers
        self.hidden = nn.ModuleList(
            EnsembleLinear(members, a, b) for a, b in itertools.pairwise(sizes)
        )
        self.out = EnsembleLinear(members, sizes[-1], out_features)

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.hidden:
            x = F.silu(layer(x, members))
        return self.out(x, members)

    def forward_loop(self, x: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
        """Reference: each member's MLP run separately (a Python loop of matmuls)."""
        for layer in self.hidden:
            assert isinstance(layer, EnsembleLinear)
            x = F.silu(layer.forward_loop(x, members))
        return self.out.forward_loop(x, members)


def partition(members: torch.Tensor, slots: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Group rows by the member they sampled, for running each member on its rows only.

    Args:
        members: ``[B]`` long, values in ``[0, slots)``.
        slots: number of members rows can choose from.

    Returns:
        ``(dest [B], present [P], rows)``: row ``b`` goes to position ``dest[b]`` of a padded
        ``[P * rows, ...]`` buffer, i.e. to chunk ``dest[b] // rows`` whose member slot is
        ``present[dest[b] // rows]``; only the P slots some row chose get a chunk, and ``rows``
        is the largest share. Reading outputs back with ``y[dest]`` restores the row order.
        (Costs one device synchronisation for the chunk size.)
    """
    counts = torch.bincount(members, minlength=slots)  # [slots]
    present = torch.nonzero(counts, as_tuple=True)[0]  # [P]
    rows = int(counts.max())
    chunk_of_slot = torch.cumsum(counts > 0, 0) - 1  # slot -> chunk index (valid where present)
    order = torch.argsort(members, stable=True)
    starts = torch.cumsum(counts, 0) - counts  # first sorted position of each slot
    sorted_members = members[order]
    pos = torch.arange(members.shape[0], device=members.device) - starts[sorted_members]
    dest = torch.empty_like(members)
    dest[order] = chunk_of_slot[sorted_members] * rows + pos
    return dest, present, rows
