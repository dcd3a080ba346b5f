"""The RSSM's disagreement heads, reading only the deterministic state ``deter [B, D]``: they
predict the observation, and their spread is high where the model saw little data
(Plan2Explore). Trained jointly with the model, from detached inputs. (The RSSM's other
uncertainty, its error heads, is :class:`worldflux.models.error_heads.ErrorHeads`.)
"""

from __future__ import annotations

import torch
from torch import nn

from ..ensemble.nets import EnsembleMLP


class DisagreementHeads(nn.Module):
    """K heads ``deter [B, D] -> target [K, B, O]``; their spread is an epistemic uncertainty.

    As in Plan2Explore (Sekar et al., 2020): independently initialised predictors agree where
    they were trained and disagree elsewhere. ``uncertainty = sqrt(mean_o var_k(pred))`` ``[B]``.
    """

    def __init__(self, heads: int, deter: int, hidden: int, target_dim: int) -> None:
        super().__init__()
        self.heads = heads
        self.net = EnsembleMLP(heads, deter, hidden, 1, target_dim)

    def forward(self, deter: torch.Tensor) -> torch.Tensor:
        """``[B, D] -> [K, B, O]``."""
        return self.net(deter.float().unsqueeze(0).expand(self.heads, -1, -1))

    def variance(self, deter: torch.Tensor) -> torch.Tensor:
        """``[B, D] -> [B]``: the heads' variance, averaged over the target's dimensions."""
        return self(deter).var(0, unbiased=False).mean(-1)

    def uncertainty(self, deter: torch.Tensor) -> torch.Tensor:
        """``[B, D] -> [B]``."""
        return self.variance(deter).sqrt()

    def loss(self, deter: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-row squared error ``[B]`` (summed over the target, averaged over the heads) of
        predicting ``target [B, O]`` from ``deter [B, D]``; neither input gets a gradient."""
        pred = self(deter.detach())
        return ((pred - target.detach().float().unsqueeze(0)) ** 2).sum(-1).mean(0)
