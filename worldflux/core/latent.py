"""Latent spaces: how a network's raw outputs become a latent sample.

A latent space turns ``params [B, param_dim]`` (the output of a linear head) into a sample
``[B, *sample_shape]``. Stochastic spaces take explicit noise (``noise_spec``) so samples are
reproducible across backends, and provide ``kl`` / ``entropy`` for training.

* :class:`GaussianLatent` - diagonal Gaussian with a softplus std floor (PlaNet).
* :class:`CategoricalLatent` - groups of categoricals with uniform mixing ("unimix") and
  straight-through gradients (DreamerV2/V3).
* :class:`SimNormLatent` - simplicial normalisation, softmax over fixed-size groups (TD-MPC2);
  deterministic.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F

from .errors import ConfigError, ContractError
from .noise import NoiseSpec
from .shapes import check_shape


class LatentSpace(ABC):
    """Base class: ``params [B, param_dim] -> sample [B, *sample_shape]``."""

    #: Size of the raw parameter vector a network head must output.
    param_dim: int
    #: Per-sample shape of a sample.
    sample_shape: tuple[int, ...]

    @property
    def sample_dim(self) -> int:
        """Flattened size of a sample (what downstream layers consume)."""
        return math.prod(self.sample_shape)

    @property
    def noise_spec(self) -> NoiseSpec | None:
        """Noise one sample consumes (None for deterministic spaces)."""
        return None

    def _check_params(self, params: torch.Tensor) -> torch.Tensor:
        return check_shape(type(self).__name__, "params", params, ("B", self.param_dim))

    def _check_noise(self, noise: torch.Tensor, batch: int) -> torch.Tensor:
        spec = self.noise_spec
        assert spec is not None
        return check_shape(type(self).__name__, "noise", noise, (batch, *spec.shape))

    @abstractmethod
    def sample(
        self,
        params: torch.Tensor,
        *,
        deterministic: bool = False,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Sample ``[B, *sample_shape]``; ``deterministic`` gives the mode; ``noise`` follows
        :attr:`noise_spec` (``[B, *shape]``), None draws from torch's RNG."""


class StochasticLatentSpace(LatentSpace):
    """A latent space that is a distribution: adds KL divergence and entropy."""

    @property
    @abstractmethod
    def noise_spec(self) -> NoiseSpec: ...

    @abstractmethod
    def kl(self, params_p: torch.Tensor, params_q: torch.Tensor) -> torch.Tensor:
        """``KL(p || q)`` per sample ``[B]`` (summed over latent dimensions)."""

    @abstractmethod
    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        """Entropy per sample ``[B]``."""


class GaussianLatent(StochasticLatentSpace):
    """Diagonal Gaussian: ``params = [mean, raw_std]``, ``std = softplus(raw_std) + min_std``.

    Sample ``mean + std * eps`` (reparameterised); the mode is the mean.
    """

    def __init__(self, dim: int, min_std: float = 0.1) -> None:
        if dim <= 0:
            raise ConfigError(f"GaussianLatent.dim: expected >= 1, got {dim}.")
        if min_std < 0:
            raise ConfigError(f"GaussianLatent.min_std: expected >= 0, got {min_std}.")
        self.dim = dim
        self.min_std = min_std
        self.param_dim = 2 * dim
        self.sample_shape = (dim,)

    @property
    def noise_spec(self) -> NoiseSpec:
        return NoiseSpec((self.dim,), "normal")

    def mean_std(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, dim]`` mean and std."""
        mean, raw = self._check_params(params).chunk(2, dim=-1)
        return mean, F.softplus(raw) + self.min_std

    def sample(
        self,
        params: torch.Tensor,
        *,
        deterministic: bool = False,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        mean, std = self.mean_std(params)
        if deterministic:
            return mean
        eps = torch.randn_like(mean) if noise is None else self._check_noise(noise, mean.shape[0])
        return mean + std * eps

    def kl(self, params_p: torch.Tensor, params_q: torch.Tensor) -> torch.Tensor:
        m1, s1 = self.mean_std(params_p)
        m2, s2 = self.mean_std(params_q)
        kl = torch.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5
        return kl.sum(-1)

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        _, std = self.mean_std(params)
        return (0.5 * math.log(2 * math.pi * math.e) + torch.log(std)).sum(-1)


def softmax_last(x: torch.Tensor) -> torch.Tensor:
    """``softmax(x, dim=-1)``. Over 16 or fewer entries it is composed of elementwise ops and
    reductions: torch's CPU softmax kernel is about 5x slower over 8 entries (categorical
    latents of 8 classes, SimNorm groups of 8) and 1.5x over 16."""
    if x.shape[-1] > 16:
        return torch.softmax(x, dim=-1)
    exp = (x - x.amax(-1, keepdim=True).detach()).exp()
    return exp / exp.sum(-1, keepdim=True)


class CategoricalLatent(StochasticLatentSpace):
    """``groups`` independent categoricals of ``classes`` each; samples are one-hot
    ``[B, groups, classes]``.

    Probabilities mix the softmax with a uniform: ``(1 - unimix) * softmax + unimix / classes``
    (DreamerV3 uses 1%), so no class has probability below ``unimix / classes`` and KL stays
    finite. Sampling inverts the CDF with one uniform number per group (``noise [B, groups]``);
    gradients pass straight through (``one_hot + probs - probs.detach()``).
    """

    def __init__(self, groups: int, classes: int, unimix: float = 0.01) -> None:
        if groups <= 0 or classes <= 1:
            raise ConfigError(
                f"CategoricalLatent: expected groups >= 1 and classes >= 2, "
                f"got groups={groups}, classes={classes}."
            )
        if not 0.0 <= unimix < 1.0:
            raise ConfigError(f"CategoricalLatent.unimix: expected in [0, 1), got {unimix}.")
        self.groups = groups
        self.classes = classes
        self.unimix = unimix
        self.param_dim = groups * classes
        self.sample_shape = (groups, classes)

    @property
    def noise_spec(self) -> NoiseSpec:
        return NoiseSpec((self.groups,), "uniform")

    def probs(self, params: torch.Tensor) -> torch.Tensor:
        """``[B, groups, classes]`` mixed probabilities."""
        logits = self._check_params(params).reshape(-1, self.groups, self.classes)
        probs = softmax_last(logits)
        if self.unimix > 0:
            probs = (1.0 - self.unimix) * probs + self.unimix / self.classes
        return probs

    def sample(
        self,
        params: torch.Tensor,
        *,
        deterministic: bool = False,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        probs = self.probs(params)
        if deterministic:
            index = probs.argmax(-1)
        else:
            if noise is None:
                u = torch.rand(probs.shape[:-1], device=probs.device, dtype=probs.dtype)
            else:  # uniform on [0, 1); values are not range-checked on this hot path
                u = self._check_noise(noise, probs.shape[0]).to(probs.dtype)
            cdf = probs.detach().cumsum(-1)
            # index = number of classes whose cumulative probability is <= u; rounding can make
            # the last cdf entry fall just below 1, so the count is capped at the last class.
            index = (cdf <= u.unsqueeze(-1)).sum(-1).clamp(max=self.classes - 1)
        one_hot = F.one_hot(index, self.classes).to(probs.dtype)
        return one_hot + (probs - probs.detach())  # exactly one-hot forward, grads of probs

    def kl(self, params_p: torch.Tensor, params_q: torch.Tensor) -> torch.Tensor:
        p, q = self.probs(params_p), self.probs(params_q)
        return (p * (torch.log(p) - torch.log(q))).sum((-2, -1))

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        p = self.probs(params)
        return -(p * torch.log(p)).sum((-2, -1))


class SimNormLatent(LatentSpace):
    """Simplicial normalisation (TD-MPC2): split ``dim`` into groups of ``simplex_dim`` and
    softmax each group (``softmax(x / temperature)``). Deterministic; ``sample`` is the projection."""

    def __init__(self, dim: int, simplex_dim: int = 8, temperature: float = 1.0) -> None:
        if dim <= 0 or simplex_dim <= 1 or dim % simplex_dim:
            raise ConfigError(
                f"SimNormLatent: dim must be a positive multiple of simplex_dim >= 2, "
                f"got dim={dim}, simplex_dim={simplex_dim}."
            )
        if temperature <= 0:
            raise ConfigError(f"SimNormLatent.temperature: expected > 0, got {temperature}.")
        self.dim = dim
        self.simplex_dim = simplex_dim
        self.temperature = temperature
        self.param_dim = dim
        self.sample_shape = (dim,)

    def sample(
        self,
        params: torch.Tensor,
        *,
        deterministic: bool = False,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if noise is not None:
            raise ContractError("SimNormLatent is deterministic: expected noise=None.")
        x = self._check_params(params)
        groups = x.reshape(x.shape[0], -1, self.simplex_dim) / self.temperature
        return softmax_last(groups).reshape(x.shape[0], self.dim)
