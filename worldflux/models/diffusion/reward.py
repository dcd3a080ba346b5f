"""The reward and termination networks of the diffusion family: two small convolutional networks
of their own (as DIAMOND gives them a model of its own), each reading the last ``L`` frames, the next
frame, the change between the last two and the last ``L`` actions (stacked on the channels by
:meth:`~.model.DiffusionModel.reward`: a broken brick is a few pixels of change, easier to see
in the difference than in two frames).

Reward and termination do not share a network: with one trunk and two outputs, the termination
loss (an end every few hundred steps) kept the reward from being learned on Breakout (reward
correlation 0.07 after 600 updates of the two together, 0.89 after 450 of the reward alone).

Shapes: B = batch, C/H/W = frame channels/height/width (frames in ``[-1, 1]``), L = history
frames, A = action size.
"""

from __future__ import annotations

import torch
from torch import nn


class StepCNN(nn.Module):
    """``(frames [B, F, H, W], actions [B, L*A]) -> [B]`` (F stacked channels).

    Stride-2 convolutions (``depth``, doubling, at most ``8 * depth`` wide) take the frames
    down to at most 4 x 4; an MLP of width ``hidden`` reads them with the actions.
    """

    def __init__(
        self, in_channels: int, size: int, action_inputs: int, depth: int, hidden: int
    ) -> None:
        super().__init__()
        convs: list[nn.Module] = []
        width_in, width = in_channels, depth
        while size > 4:
            convs += [nn.Conv2d(width_in, width, 4, stride=2, padding=1), nn.SiLU()]
            width_in, width, size = width, min(2 * width, 8 * depth), size // 2
        self.convs = nn.Sequential(*convs)
        self.mlp = nn.Sequential(
            nn.Linear(width_in * size * size + action_inputs, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, frames: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        features = self.convs(frames).flatten(1)
        return self.mlp(torch.cat([features, actions], dim=-1)).squeeze(-1)
