"""Layers of the TD-MPC2 family: LayerNorm + Mish MLPs, SimNorm, a batched Q-ensemble and the
discrete (two-hot, symlog-spaced) regression used for rewards and values.

Shapes: B = rows, I / O = input / output size, Q = ensemble members, K = bins.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from ...core.latent import SimNormLatent

#: Standard deviation of the truncated-normal initialisation of every weight matrix.
INIT_STD = 0.02


def _init_weight(weight: torch.Tensor) -> None:
    nn.init.trunc_normal_(weight, std=INIT_STD, a=-2 * INIT_STD, b=2 * INIT_STD)


class SimNorm(nn.Module):
    """``[B, L] -> [B, L]``: softmax over groups of ``simplex_dim`` (:class:`SimNormLatent`)."""

    def __init__(self, dim: int, simplex_dim: int) -> None:
        super().__init__()
        self.space = SimNormLatent(dim, simplex_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        return self.space.sample(x.reshape(-1, x.shape[-1])).reshape(*lead, x.shape[-1])


class NormedLinear(nn.Module):
    """``Linear -> (Dropout) -> LayerNorm -> activation`` (Mish unless ``activation`` is given)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        dropout: float = 0.0,
        activation: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        _init_weight(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.norm = nn.LayerNorm(out_features)
        self.activation = activation if activation is not None else nn.Mish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.norm(self.dropout(self.linear(x))))


def mlp(
    in_features: int,
    hidden: list[int],
    out_features: int,
    *,
    out_activation: nn.Module | None = None,
    zero_out: bool = False,
) -> nn.Sequential:
    """``in -> hidden... (NormedLinear) -> out``.

    The last layer is a ``NormedLinear`` ending in ``out_activation`` when one is given (e.g.
    :class:`SimNorm`), else a plain ``Linear`` (zero-initialised with ``zero_out``, as the paper
    does for the reward and value heads so that they start at a prediction of 0).
    """
    layers: list[nn.Module] = [
        NormedLinear(a, b) for a, b in itertools.pairwise([in_features, *hidden])
    ]
    last_in = hidden[-1] if hidden else in_features
    if out_activation is not None:
        layers.append(NormedLinear(last_in, out_features, activation=out_activation))
    else:
        out = nn.Linear(last_in, out_features)
        if zero_out:
            nn.init.zeros_(out.weight)
        else:
            _init_weight(out.weight)
        nn.init.zeros_(out.bias)
        layers.append(out)
    return nn.Sequential(*layers)


class NormedEnsemble(nn.Module):
    """Q independent MLPs ``I -> hidden (x layers) -> O`` evaluated in one batched matmul per layer
    (the Q-ensemble, with O = K bins, and the uncertainty heads).

    Each hidden layer is ``Linear -> LayerNorm -> Mish`` with the member's own weights; the first
    one applies ``dropout`` (the paper's 1% for Q) after its linear map. With ``zero_out`` the
    output layer starts at zero (the Q-ensemble's, so values start at 0).

    ``forward(x [B, I], detach_params=False) -> [Q, B, O]``. With ``detach_params`` the weights
    enter the graph detached: gradients reach ``x`` but not the ensemble (the policy loss uses
    this so that maximising Q moves the policy and never the critics).
    """

    def __init__(
        self,
        members: int,
        in_features: int,
        hidden: int,
        layers: int,
        out_features: int,
        *,
        dropout: float = 0.0,
        zero_out: bool = False,
    ) -> None:
        super().__init__()
        sizes = [in_features] + [hidden] * layers + [out_features]
        self.members = members
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for a, b in itertools.pairwise(sizes):
            w = torch.empty(members, a, b)
            _init_weight(w)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(torch.zeros(members, 1, b)))
        if zero_out:
            nn.init.zeros_(self.weights[-1])
        self.norm_weights = nn.ParameterList(
            nn.Parameter(torch.ones(members, 1, hidden)) for _ in range(layers)
        )
        self.norm_biases = nn.ParameterList(
            nn.Parameter(torch.zeros(members, 1, hidden)) for _ in range(layers)
        )
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, *, detach_params: bool = False) -> torch.Tensor:
        def p(t: torch.Tensor) -> torch.Tensor:
            return t.detach() if detach_params else t

        h = x.unsqueeze(0).expand(self.members, *x.shape)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(p(b), h, p(w))
            if i == last:
                break
            if i == 0:
                h = self.dropout(h)
            h = F.layer_norm(h, h.shape[-1:])
            h = F.mish(h * p(self.norm_weights[i]) + p(self.norm_biases[i]))
        return h


# -- discrete regression --------------------------------------------------------------------------
def symlog(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.expm1(x.abs())


class TwoHot(nn.Module):
    """Regression as classification over ``bins`` values evenly spaced in symlog space on
    ``[low, high]`` (the paper: 101 bins on [-10, 10], i.e. about +-22,000 in real units).

    ``loss(logits [..., K], target [...]) -> [...]``: cross-entropy against the two-hot encoding
    of ``symlog(target)`` (clamped to the range, so larger targets count as the edge bin).
    ``value(logits [..., K]) -> [...]``: ``symexp`` of the expected bin value.
    """

    centers: torch.Tensor

    def __init__(self, bins: int, low: float, high: float) -> None:
        super().__init__()
        self.bins, self.low, self.high = bins, low, high
        self.width = (high - low) / (bins - 1)
        self.register_buffer("centers", torch.linspace(low, high, bins), persistent=False)

    def encode(self, target: torch.Tensor) -> torch.Tensor:
        """``[...] -> [..., K]`` two-hot weights of ``symlog(target)``."""
        x = symlog(target.float()).clamp(self.low, self.high)
        position = (x - self.low) / self.width
        lower = position.floor().clamp(0, self.bins - 1)
        upper_weight = position - lower
        lower_idx = lower.long()
        upper_idx = (lower_idx + 1).clamp(max=self.bins - 1)
        out = torch.zeros(*x.shape, self.bins, device=x.device, dtype=x.dtype)
        out.scatter_add_(-1, lower_idx.unsqueeze(-1), (1 - upper_weight).unsqueeze(-1))
        out.scatter_add_(-1, upper_idx.unsqueeze(-1), upper_weight.unsqueeze(-1))
        return out

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return -(self.encode(target) * F.log_softmax(logits.float(), dim=-1)).sum(-1)

    def value(self, logits: torch.Tensor) -> torch.Tensor:
        return symexp((torch.softmax(logits.float(), dim=-1) * self.centers).sum(-1))


# -- policy prior ---------------------------------------------------------------------------------
def squashed_gaussian(
    mean: torch.Tensor,
    log_std: torch.Tensor,
    eps: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``tanh(mean + std * eps)`` and its log-density ``[B]`` (with the tanh correction)."""
    pre = mean + log_std.exp() * eps
    gaussian = (-0.5 * eps.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
    action = torch.tanh(pre)
    correction = torch.log(F.relu(1 - action.pow(2)) + 1e-6).sum(-1)
    return action, gaussian - correction
