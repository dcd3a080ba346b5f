"""Latent spaces: distributions, explicit noise, unimix, straight-through gradients, SimNorm."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Categorical, Normal, kl_divergence

from worldflux.core import (
    CategoricalLatent,
    ConfigError,
    ContractError,
    GaussianLatent,
    SimNormLatent,
)


def test_gaussian_matches_torch_distributions() -> None:
    lat = GaussianLatent(5, min_std=0.1)
    p, q = torch.randn(4, 10), torch.randn(4, 10)
    mp, sp = lat.mean_std(p)
    mq, sq = lat.mean_std(q)
    assert bool((sp >= 0.1).all())
    expected = kl_divergence(Normal(mp, sp), Normal(mq, sq)).sum(-1)
    assert torch.allclose(lat.kl(p, q), expected, atol=1e-5)
    assert torch.allclose(lat.entropy(p), Normal(mp, sp).entropy().sum(-1), atol=1e-5)


def test_gaussian_uses_given_noise_and_mode() -> None:
    lat = GaussianLatent(3)
    params = torch.randn(2, 6)
    eps = torch.randn(2, 3)
    mean, std = lat.mean_std(params)
    assert torch.equal(lat.sample(params, noise=eps), mean + std * eps)
    assert torch.equal(lat.sample(params, deterministic=True), mean)
    assert lat.noise_spec.shape == (3,) and lat.noise_spec.distribution == "normal"
    with pytest.raises(
        ContractError, match=r"GaussianLatent.noise: expected shape \[2, 3\], got \[2, 4\]"
    ):
        lat.sample(params, noise=torch.randn(2, 4))
    with pytest.raises(
        ContractError, match=r"GaussianLatent.params: expected shape \[B=2, 6\], got \[2, 5\]"
    ):
        lat.sample(torch.randn(2, 5))


def test_categorical_unimix_floor_and_kl() -> None:
    lat = CategoricalLatent(groups=4, classes=8, unimix=0.01)
    logits = torch.randn(3, 32) * 20  # very peaked
    probs = lat.probs(logits)
    assert probs.shape == (3, 4, 8)
    assert bool((probs >= 0.01 / 8 - 1e-9).all())
    assert torch.allclose(probs.sum(-1), torch.ones(3, 4))
    other = torch.randn(3, 32)
    expected = kl_divergence(Categorical(probs=probs), Categorical(probs=lat.probs(other))).sum(-1)
    assert torch.allclose(lat.kl(logits, other), expected, atol=1e-5)
    assert bool(torch.isfinite(lat.kl(logits, -logits)).all())


def test_categorical_sampling_follows_probabilities_with_given_noise() -> None:
    lat = CategoricalLatent(groups=1, classes=4, unimix=0.0)
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4]])).repeat(20000, 1)
    u = torch.rand(20000, 1, generator=torch.Generator().manual_seed(0))
    sample = lat.sample(logits, noise=u)
    freq = sample.detach().sum(0).squeeze(0) / 20000
    assert torch.allclose(freq, torch.tensor([0.1, 0.2, 0.3, 0.4]), atol=0.015)
    # same noise -> same sample; the sample is one-hot
    assert torch.equal(lat.sample(logits, noise=u), sample)
    assert torch.equal(sample.detach().sum(-1), torch.ones(20000, 1))
    # inverse CDF: u just below the first boundary picks class 0, just above picks class 1
    first = lat.sample(logits[:2], noise=torch.tensor([[0.099], [0.101]]))
    assert first.detach().argmax(-1).squeeze(-1).tolist() == [0, 1]


def test_categorical_straight_through_gradient() -> None:
    lat = CategoricalLatent(groups=2, classes=3, unimix=0.01)
    logits = torch.randn(1, 6, requires_grad=True)
    weights = torch.randn(1, 2, 3)
    (lat.sample(logits, noise=torch.rand(1, 2)) * weights).sum().backward()
    grad_sample = logits.grad.clone()
    logits.grad = None
    (lat.probs(logits) * weights).sum().backward()
    assert grad_sample.abs().sum() > 0
    assert torch.allclose(grad_sample, logits.grad)  # gradient of the probabilities


def test_categorical_mode_is_argmax() -> None:
    lat = CategoricalLatent(groups=2, classes=3)
    logits = torch.tensor([[0.0, 5.0, 0.0, 9.0, 0.0, 0.0]])
    mode = lat.sample(logits, deterministic=True).detach()
    assert mode.argmax(-1).tolist() == [[1, 0]]


def test_simnorm_projects_groups_onto_simplices() -> None:
    lat = SimNormLatent(16, simplex_dim=8)
    out = lat.sample(torch.randn(3, 16))
    assert out.shape == (3, 16)
    assert torch.allclose(out.reshape(3, 2, 8).sum(-1), torch.ones(3, 2))
    assert lat.noise_spec is None
    with pytest.raises(ConfigError, match="multiple of simplex_dim"):
        SimNormLatent(10, simplex_dim=8)
    with pytest.raises(ContractError, match="deterministic"):
        lat.sample(torch.randn(3, 16), noise=torch.zeros(3, 16))


def test_invalid_latent_settings() -> None:
    with pytest.raises(ConfigError, match=r"unimix: expected in \[0, 1\), got 1.5"):
        CategoricalLatent(2, 3, unimix=1.5)
    with pytest.raises(ConfigError, match="GaussianLatent.dim: expected >= 1, got 0"):
        GaussianLatent(0)


@pytest.mark.parametrize("classes", [4, 8, 16, 32])
def test_softmax_last_equals_torch_softmax_with_its_gradient(classes: int) -> None:
    from worldflux.core.latent import softmax_last

    torch.manual_seed(0)
    x = (torch.randn(32, 5, classes, dtype=torch.float64) * 30).requires_grad_()
    weights = torch.randn(32, 5, classes, dtype=torch.float64)
    ours = softmax_last(x)
    (grad_ours,) = torch.autograd.grad((ours * weights).sum(), x)
    reference = torch.softmax(x, -1)
    (grad_reference,) = torch.autograd.grad((reference * weights).sum(), x)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-12)
    torch.testing.assert_close(grad_ours, grad_reference, rtol=0, atol=1e-12)
