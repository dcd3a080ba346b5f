"""Building blocks of the RSSM families: MLPs, CNN encoder/decoder, LayerNorm GRU, two-hot.

Shapes: B = batch, D = deterministic size, F = feature size (deter + flattened stoch).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def symlog(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.expm1(x.abs())


def mlp(inp: int, hidden: int, out: int, layers: int) -> nn.Sequential:
    """``layers`` x (Linear -> LayerNorm -> SiLU), then a Linear to ``out``.

    Every Linear keeps its bias: without it, ``LayerNorm(W x)`` would be blind to the scale of
    ``x`` (``x`` and ``2 x`` give the same features), which caps how precisely an MLP can read a
    low-dimensional observation or action.
    """
    mods: list[nn.Module] = []
    width = inp
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), nn.LayerNorm(hidden), nn.SiLU()]
        width = hidden
    mods.append(nn.Linear(width, out))
    return nn.Sequential(*mods)


class LayerNormGRUCell(nn.Module):
    """GRU cell with LayerNorm on the gate pre-activations (DreamerV2/V3): ``[B, I], [B, D] -> [B, D]``.

    ``update = sigmoid(u - 1)`` biases the cell towards keeping its state early in training.
    """

    def __init__(self, inp: int, size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(inp + size, 3 * size)
        self.norm = nn.LayerNorm(3 * size)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        parts = self.norm(self.linear(torch.cat([x, h], -1)))
        reset, cand, update = parts.chunk(3, -1)
        reset = torch.sigmoid(reset)
        cand = torch.tanh(reset * cand)
        update = torch.sigmoid(update - 1.0)
        return update * cand + (1.0 - update) * h


class ChannelNorm(nn.Module):
    """LayerNorm over the channel dimension of ``[B, C, H, W]``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def conv_stages(resolution: int, min_resolution: int = 4) -> int:
    """Number of stride-2 stages from ``resolution`` down to ``min_resolution``."""
    stages = round(math.log2(resolution / min_resolution))
    if stages < 1 or min_resolution * 2**stages != resolution:
        raise ValueError(
            f"image side {resolution} must be {min_resolution} times a power of two (>= 2), "
            "e.g. 16, 32 or 64."
        )
    return stages


class ImageEncoder(nn.Module):
    """uint8/float images ``[B, C, H, W]`` -> embedding ``[B, E]``: stride-2 convs (kernel 4),
    channels ``depth x (1, 2, 4, ...)``, down to 4x4."""

    def __init__(self, shape: tuple[int, ...], depth: int) -> None:
        super().__init__()
        c, h, w = shape
        if h != w:
            raise ValueError(f"ImageEncoder: expected square images, got {h}x{w}.")
        mods: list[nn.Module] = []
        ch = c
        for i in range(conv_stages(h)):
            out = depth * 2**i
            mods += [nn.Conv2d(ch, out, 4, 2, 1), ChannelNorm(out), nn.SiLU()]
            ch = out
        self.net = nn.Sequential(*mods)
        self.out_dim = ch * 4 * 4

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.float() / 255.0 - 0.5 if obs.dtype == torch.uint8 else obs.float()
        return self.net(x).flatten(1)


class ImageDecoder(nn.Module):
    """Features ``[B, F]`` -> images ``[B, C, H, W]`` in the encoder's input scale (pixel/255 - 0.5)."""

    def __init__(self, feat: int, shape: tuple[int, ...], depth: int) -> None:
        super().__init__()
        c, h, _ = shape
        stages = conv_stages(h)
        self.ch = depth * 2 ** (stages - 1)
        self.inp = nn.Linear(feat, self.ch * 16)
        mods: list[nn.Module] = []
        ch = self.ch
        for i in reversed(range(stages - 1)):
            out = depth * 2**i
            mods += [nn.ConvTranspose2d(ch, out, 4, 2, 1), ChannelNorm(out), nn.SiLU()]
            ch = out
        mods.append(nn.ConvTranspose2d(ch, c, 4, 2, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.net(self.inp(feat).reshape(-1, self.ch, 4, 4))


class TwoHot:
    """Two-hot encoding over ``bins`` equally spaced in symlog space (DreamerV3's reward head).

    ``loss(logits [B, N], target [B]) -> [B]`` cross-entropy; ``mean(logits) -> [B]`` in the
    original (symexp) scale.
    """

    def __init__(self, bins: int = 255, low: float = -20.0, high: float = 20.0) -> None:
        self.bins = torch.linspace(low, high, bins)

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        bins = self.bins.to(logits.device, logits.dtype)
        return symexp((torch.softmax(logits, -1) * bins).sum(-1))

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        bins = self.bins.to(logits.device, logits.dtype)
        y = symlog(target).clamp(bins[0], bins[-1])  # targets beyond +-symexp(20) do not occur
        above = torch.searchsorted(bins, y.contiguous(), right=True).clamp(1, len(bins) - 1)
        below = above - 1
        lo, hi = bins[below], bins[above]
        w_hi = ((y - lo) / (hi - lo)).clamp(0, 1)
        logp = F.log_softmax(logits, -1)
        return -(
            (1 - w_hi) * logp.gather(-1, below[..., None]).squeeze(-1)
            + w_hi * logp.gather(-1, above[..., None]).squeeze(-1)
        )
