"""A Polyak (exponential moving) average of a policy's acting weights, kept beside training.

Off-policy agents trained on penalised dream rollouts can swing between good and poor gaits
within a few thousand updates; the average of the recent weights acts more steadily than any
one of them. Training never sees the average: it is swapped in to score and save the policy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn


def acting_network(policy: nn.Module) -> nn.Module:
    """The part of an SB3 policy that chooses actions: ``policy.actor`` for SAC and TD3 (their
    critics and target networks are left alone), the whole policy otherwise (PPO, A2C)."""
    actor = getattr(policy, "actor", None)
    return actor if isinstance(actor, nn.Module) else policy


class PolicyAverage:
    """``average <- decay * average + (1 - decay) * weights`` on every :meth:`update`, over the
    floating-point parameters and buffers of ``network`` (starting from its current weights).

    ``decay`` in ``[0, 1)``: the average spans about ``1 / (1 - decay)`` updates."""

    def __init__(self, network: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay: expected a number in [0, 1), got {decay!r}.")
        self.network, self.decay = network, decay
        self._live = [t for t in network.state_dict().values() if t.is_floating_point()]
        self.average = [t.detach().clone() for t in self._live]
        self.updates = 0

    @torch.no_grad()
    def update(self) -> None:
        """Move the average towards the network's current weights."""
        torch._foreach_lerp_(self.average, self._live, 1.0 - self.decay)
        self.updates += 1

    @torch.no_grad()
    def load(self) -> None:
        """Copy the average into the network for good (e.g. after training)."""
        torch._foreach_copy_(self._live, self.average)

    @contextlib.contextmanager
    def swapped(self) -> Iterator[None]:
        """The network holds the average inside the block and its trained weights again after."""
        with torch.no_grad():
            trained = [t.clone() for t in self._live]
            torch._foreach_copy_(self._live, self.average)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self._live, trained)


def policy_average(policy: Any, decay: float) -> PolicyAverage | None:
    """A :class:`PolicyAverage` of ``policy``'s :func:`acting_network`, or None for ``decay`` 0
    (no averaging)."""
    return PolicyAverage(acting_network(policy), decay) if decay else None
