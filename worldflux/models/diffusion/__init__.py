"""The ``diffusion`` family (alias ``diamond``), a DIAMOND-like world model: the conditional U-Net
(:mod:`worldflux.models.diffusion.unet`), the EDM denoiser and its few-step sampler
(:mod:`worldflux.models.diffusion.denoiser`), the reward and termination model
(:mod:`worldflux.models.diffusion.reward`), and the family that joins them
(:mod:`worldflux.models.diffusion.model`)."""

from .model import DiffusionConfig, DiffusionModel

__all__ = ["DiffusionConfig", "DiffusionModel"]
