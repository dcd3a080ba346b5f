"""The reward and termination networks of the diffusion family: small networks of their own (as
DIAMOND gives them a model of its own).

* Reward (:class:`StepCNN`): reads the last ``L`` frames, the next frame, the change between the
  last two and the last ``L`` actions, stacked on the channels by
  :meth:`~.model.DiffusionModel.reward` (a broken brick is a few pixels of change, easier to see
  in the difference than in two frames).
* Termination (:class:`WindowEnd`): reads features of the last ``end_window`` steps (each
  from the new frame, the change and the action), which the world model's state carries.
  Breakout's game ends six to nine steps after the last ball leaves the screen, and those steps
  look like the wait for a serve after any lost ball: four frames cannot tell them apart (a
  network on four frames ranked held-out game ends below other steps, AUC 0.28), twelve steps
  of features can (AUC 0.999 for such a network trained alone on real frames with windows drawn
  to hold game ends; ``benchmarks/results/diffusion-breakout-termination.md``).

Reward and termination do not share a network: with one trunk and two outputs, the termination
loss (an end every few hundred steps) kept the reward from being learned on Breakout (reward
correlation 0.07 after 600 updates of the two together, 0.89 after 450 of the reward alone).

Shapes: B = batch, C/H/W = frame channels/height/width (frames in ``[-1, 1]``), L = history
frames, A = action size, M = ``hidden``, K = ``window``.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_trunk(in_channels: int, size: int, depth: int) -> tuple[nn.Sequential, int]:
    """Stride-2 convolutions (``depth`` wide, doubling, at most ``8 * depth``) that take
    ``[B, in_channels, size, size]`` down to at most 4 x 4; returns them and the width of
    their flattened output."""
    convs: list[nn.Module] = []
    width_in, width = in_channels, depth
    while size > 4:
        convs += [nn.Conv2d(width_in, width, 4, stride=2, padding=1), nn.SiLU()]
        width_in, width, size = width, min(2 * width, 8 * depth), size // 2
    return nn.Sequential(*convs), width_in * size * size


class StepCNN(nn.Module):
    """``(frames [B, F, H, W], actions [B, L*A]) -> [B]`` (F stacked channels): a
    :func:`conv_trunk` of width ``depth``, then an MLP of width ``hidden`` over its features
    and the actions."""

    def __init__(
        self, in_channels: int, size: int, action_inputs: int, depth: int, hidden: int
    ) -> None:
        super().__init__()
        self.convs, features = conv_trunk(in_channels, size, depth)
        self.mlp = nn.Sequential(
            nn.Linear(features + action_inputs, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, frames: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        features = self.convs(frames).flatten(1)
        return self.mlp(torch.cat([features, actions], dim=-1)).squeeze(-1)


class WindowEnd(nn.Module):
    """The termination model: a logit from the last ``window`` (K) steps.

    :meth:`features` reads one step (a :func:`conv_trunk` of width ``depth`` over the new frame
    and the change, then a linear layer over those features and the action) into ``[B, M]``;
    the world model's state keeps the last K of them (zeros before an episode's or a training
    window's first step), and :meth:`forward` reads them with an MLP of width M.
    """

    def __init__(
        self, channels: int, size: int, action_dim: int, depth: int, hidden: int, window: int
    ) -> None:
        super().__init__()
        self.convs, features = conv_trunk(2 * channels, size, depth)
        self.inputs = nn.Linear(features + action_dim, hidden)
        self.mlp = nn.Sequential(
            nn.Linear(window * hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, 1),
        )

    def features(
        self, frame: torch.Tensor, change: torch.Tensor, action: torch.Tensor
    ) -> torch.Tensor:
        """``frame, change [B, C, H, W]``, ``action [B, A]`` -> one step's features ``[B, M]``."""
        convs = self.convs(torch.cat([frame, change], dim=1)).flatten(1)
        return self.inputs(torch.cat([convs, action], dim=-1))

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        """``window [B, K, M]`` (the last K steps' features, oldest first) -> logit ``[B]``."""
        return self.mlp(window.flatten(1)).squeeze(-1)
