"""The denoiser of the diffusion family: EDM (Karras et al., 2022) preconditioning around
:class:`~.unet.ConditionalUNet`, its training loss, and a few-step Euler sampler, as DIAMOND
(Alonso et al., 2024) uses them. What it denoises is a step's change of the frame (see
:mod:`.model`), conditioned on past frames and actions.

Frames are floats in ``[-1, 1]`` (their changes in ``[-2, 2]``). Shapes: B = batch,
C/H/W = frame channels/height/width, L = history frames, A = action size.

* Preconditioning: ``D(x; sigma) = c_skip x + c_out F(c_in x; c_noise)`` with
  ``c_in = 1 / sqrt(sigma^2 + s^2)``, ``c_skip = s^2 / (sigma^2 + s^2)``,
  ``c_out = sigma s / sqrt(sigma^2 + s^2)``, ``c_noise = log(sigma) / 4`` and ``s = sigma_data``.
* Training: ``log sigma ~ N(-0.4, 1.2^2)`` (clipped to ``[sigma_min, sigma_max]``), the network
  regresses ``(x - c_skip x_noisy) / c_out`` (EDM's weighting in the network's units).
* Sampling: ``steps`` Euler steps on Karras' schedule from ``sigma_max`` to ``sigma_min``, then
  to 0; the start is ``sigma_max`` times explicit standard-normal noise, so the same noise gives
  the same sample. No stochastic churn.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .unet import ConditionalUNet


@dataclass(frozen=True)
class SamplerSettings:
    """The sampler's noise schedule (see the module docstring)."""

    steps: int = 3
    sigma_min: float = 2e-3
    sigma_max: float = 5.0
    rho: float = 7.0

    def sigmas(self) -> list[float]:
        """The ``steps`` noise levels from ``sigma_max`` down to ``sigma_min``, then 0."""
        if self.steps == 1:
            return [self.sigma_max, 0.0]
        lo, hi = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)
        levels = [(hi + i / (self.steps - 1) * (lo - hi)) ** self.rho for i in range(self.steps)]
        return [*levels, 0.0]


class Denoiser(torch.nn.Module):
    """EDM-preconditioned denoiser of a step's frame change (module docstring)."""

    def __init__(self, net: ConditionalUNet, sigma_data: float, sampler: SamplerSettings) -> None:
        super().__init__()
        self.net, self.sigma_data, self.sampler = net, sigma_data, sampler

    def denoise(
        self, noisy: torch.Tensor, sigma: torch.Tensor, history: torch.Tensor, actions: torch.Tensor
    ) -> torch.Tensor:
        """The clean estimate ``[B, C, H, W]`` of ``noisy [B, C, H, W]`` at noise level
        ``sigma [B]``, given ``history [B, L*C, H, W]`` and ``actions [B, L*A]``."""
        c_in, c_skip, c_out = self._scales(sigma)
        out = self.net(noisy * c_in, history, sigma.log() / 4, actions)
        return c_skip * noisy + c_out * out

    def _scales(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``c_in, c_skip, c_out`` for ``sigma [B]``, each ``[B, 1, 1, 1]``."""
        s2 = self.sigma_data**2
        var = (sigma**2 + s2)[:, None, None, None]
        sigma = sigma[:, None, None, None]
        return var.rsqrt(), s2 / var, sigma * self.sigma_data * var.rsqrt()

    def loss(
        self, target: torch.Tensor, history: torch.Tensor, actions: torch.Tensor
    ) -> torch.Tensor:
        """Per-example EDM loss ``[B]`` (mean over pixels) of ``target [B, C, H, W]``."""
        b = target.shape[0]
        log_sigma = torch.randn(b, device=target.device) * 1.2 - 0.4
        sigma = log_sigma.exp().clamp(self.sampler.sigma_min, self.sampler.sigma_max)
        noisy = target + sigma[:, None, None, None] * torch.randn_like(target)
        c_in, c_skip, c_out = self._scales(sigma)
        out = self.net(noisy * c_in, history, sigma.log() / 4, actions)
        goal = (target - c_skip * noisy) / c_out
        return ((out - goal) ** 2).flatten(1).mean(-1)

    def sample(
        self, start: torch.Tensor, history: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Euler-sample a change from standard-normal ``start [B, C, H, W]``.

        Returns the sample ``[B, C, H, W]`` and the first step's estimate ``[B, C, H, W]`` (the
        denoiser's guess from the noisiest level: close to the mean of the samples it deems
        possible).
        """
        sigmas = self.sampler.sigmas()
        x = start * sigmas[0]
        first = x
        for i in range(len(sigmas) - 1):
            sigma = x.new_full((x.shape[0],), sigmas[i])
            denoised = self.denoise(x, sigma, history, actions)
            if i == 0:
                first = denoised
            x = x + (x - denoised) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
        return x, first
