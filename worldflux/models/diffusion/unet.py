"""A small conditional U-Net, the network inside the diffusion family's denoiser.

The input is the noisy next frame with the last ``L`` frames stacked on its channels (as
DIAMOND conditions on past observations, Alonso et al., 2024); the noise level and the last
``L`` actions enter every residual block as a per-channel scale and shift of its group norm
(FiLM / adaptive group normalisation).

Shapes: B = batch, C/H/W = frame channels/height/width, L = history frames, E = ``cond_dim``.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn


def group_norm(channels: int) -> nn.GroupNorm:
    """Group norm with up to 8 groups that divide ``channels``."""
    groups = math.gcd(8, channels)
    return nn.GroupNorm(groups, channels)


def zero_init(module: nn.Module) -> None:
    """Set every parameter of ``module`` to zero (a layer whose output starts at zero)."""
    for p in module.parameters():
        nn.init.zeros_(p)


class ResBlock(nn.Module):
    """``[B, in, H, W] -> [B, out, H, W]``: two 3x3 convs, the first norm modulated by ``cond
    [B, E]``; a 1x1 skip when the width changes. The last conv starts at zero (an identity
    block at initialisation)."""

    def __init__(self, channels_in: int, channels_out: int, cond_dim: int) -> None:
        super().__init__()
        self.norm1 = group_norm(channels_in)
        self.film = nn.Linear(cond_dim, 2 * channels_in)
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, padding=1)
        self.norm2 = group_norm(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1)
        zero_init(self.conv2)
        self.skip = (
            nn.Conv2d(channels_in, channels_out, 1)
            if channels_in != channels_out
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(cond)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(self.norm1(x) * (1 + scale) + shift)
        h = self.conv2(F.silu(self.norm2(self.conv1(h))))
        return self.skip(x) + h


class FourierFeatures(nn.Module):
    """Scalar ``[B] -> [B, 2F]``: sines and cosines at fixed random frequencies."""

    weight: torch.Tensor

    def __init__(self, features: int) -> None:
        super().__init__()
        self.register_buffer("weight", torch.randn(1, features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        angle = 2 * math.pi * x[:, None] * self.weight
        return torch.cat([angle.cos(), angle.sin()], dim=-1)


class ConditionalUNet(nn.Module):
    """``(x [B, C, H, W], history [B, L*C, H, W], noise_level [B], actions [B, L*A]) ->
    [B, C, H, W]``.

    ``channels`` gives the width of each resolution level (one residual block per level on the
    way down and on the way up, each level halving H and W). With ``patch`` p > 1 the network
    runs on ``p x p`` patches (pixel unshuffle in, pixel shuffle out): the top level works at
    ``H / p``, p² times cheaper, and no pixel is dropped.
    """

    def __init__(
        self,
        frame_channels: int,
        history: int,
        action_inputs: int,
        channels: tuple[int, ...],
        cond_dim: int,
        patch: int = 1,
    ) -> None:
        super().__init__()
        self.patch = patch
        self.noise_features = FourierFeatures(cond_dim // 4)
        self.cond = nn.Sequential(
            nn.Linear(2 * (cond_dim // 4) + action_inputs, cond_dim),
            nn.SiLU(),
            nn.Linear(cond_dim, cond_dim),
        )
        self.stem = nn.Conv2d(frame_channels * (history + 1) * patch**2, channels[0], 3, padding=1)
        widths_in = (channels[0], *channels[:-1])
        self.down = nn.ModuleList(
            ResBlock(w_in, w, cond_dim) for w_in, w in zip(widths_in, channels, strict=True)
        )
        self.downsample = nn.ModuleList(
            nn.Conv2d(w, w, 3, stride=2, padding=1) for w in channels[:-1]
        )
        self.middle = ResBlock(channels[-1], channels[-1], cond_dim)
        self.up = nn.ModuleList(ResBlock(2 * w, w, cond_dim) for w in channels)
        self.upsample = nn.ModuleList(
            nn.Conv2d(w, w_in, 3, padding=1) for w_in, w in itertools.pairwise(channels)
        )
        self.head_norm = group_norm(channels[0])
        self.head = nn.Conv2d(channels[0], frame_channels * patch**2, 3, padding=1)
        zero_init(self.head)

    def forward(
        self,
        x: torch.Tensor,
        history: torch.Tensor,
        noise_level: torch.Tensor,
        actions: torch.Tensor,
    ) -> torch.Tensor:
        cond = self.cond(torch.cat([self.noise_features(noise_level), actions], dim=-1))
        h = self.stem(F.pixel_unshuffle(torch.cat([x, history], dim=1), self.patch))
        skips = []
        for i, block in enumerate(self.down):
            h = block(h, cond)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.middle(h, cond)
        for i in reversed(range(len(self.up))):
            h = self.up[i](torch.cat([h, skips[i]], dim=1), cond)
            if i > 0:
                h = self.upsample[i - 1](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return F.pixel_shuffle(self.head(F.silu(self.head_norm(h))), self.patch)
