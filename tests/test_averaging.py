"""The Polyak average of a policy's acting weights (worldflux.rl.averaging)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from worldflux.rl.averaging import PolicyAverage, acting_network, policy_average


def test_the_average_follows_the_weights_at_the_stated_rate() -> None:
    net = nn.Linear(3, 2)
    start = [p.detach().clone() for p in net.parameters()]
    average = PolicyAverage(net, decay=0.75)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(4.0)
    average.update()
    average.update()
    # two steps towards weights 4 higher: 4 * (1 - 0.75**2) = 1.75 higher than at the start
    for avg, s in zip(average.average, start, strict=True):
        torch.testing.assert_close(avg, s + 1.75)
    assert average.updates == 2


def test_swapped_lends_the_average_and_gives_the_trained_weights_back() -> None:
    net = nn.Sequential(nn.Linear(2, 4), nn.LayerNorm(4), nn.Linear(4, 1))
    average = PolicyAverage(net, decay=0.5)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0).add_(1.0)
    trained = [p.detach().clone() for p in net.parameters()]
    average.update()
    x = torch.randn(5, 2)
    with average.swapped():
        for p, avg in zip(net.parameters(), average.average, strict=True):
            assert torch.equal(p, avg)
        inside = net(x)
    for p, t in zip(net.parameters(), trained, strict=True):
        assert torch.equal(p, t)
    assert not torch.equal(inside, net(x))
    average.load()
    torch.testing.assert_close(net(x), inside)


def test_sac_averages_its_actor_only_and_decay_zero_means_none() -> None:
    class Policy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.actor, self.critic = nn.Linear(2, 1), nn.Linear(3, 1)

    policy = Policy()
    assert acting_network(policy) is policy.actor
    assert acting_network(nn.Linear(2, 1)) is not None
    assert policy_average(policy, 0.0) is None
    average = policy_average(policy, 0.99)
    assert average is not None and average.network is policy.actor
    with pytest.raises(ValueError, match=r"decay: expected a number in \[0, 1\), got 1.0"):
        PolicyAverage(policy.actor, 1.0)
