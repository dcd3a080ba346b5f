"""Image similarity for predicted frames: PSNR and SSIM (Wang et al., 2004).

Frames are ``[B, C, H, W]`` on the 0-255 pixel scale (uint8 or float); both functions return one
value per frame, ``[B]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PEAK = 255.0


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of frames ``[B, ...]`` -> ``[B]`` (peak 255; a perfect
    frame scores 148 dB, the cap set by the 1e-10 error floor)."""
    err = (pred.float() - target.float()).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(PEAK**2 / err.clamp(min=1e-10))


def _gaussian_window(size: int, sigma: float, device: torch.device) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]  # [1, 1, size, size]


def ssim(pred: torch.Tensor, target: torch.Tensor, window: int = 11) -> torch.Tensor:
    """Structural similarity of frames ``[B, C, H, W]`` -> ``[B]``: the mean over channels and
    positions of the SSIM map under a Gaussian window (``window`` pixels, sigma 1.5, shrunk to
    the frame for frames smaller than it; no padding), with ``K1 = 0.01``, ``K2 = 0.03``."""
    if pred.shape != target.shape or pred.dim() != 4:
        raise ValueError(
            f"ssim: expected two [B, C, H, W] tensors of one shape, got {list(pred.shape)} and "
            f"{list(target.shape)}."
        )
    b, c, h, w = pred.shape
    size = min(window, h, w)
    size -= 1 - size % 2  # odd
    kernel = _gaussian_window(size, 1.5, pred.device)
    x = pred.float().reshape(b * c, 1, h, w)
    y = target.float().reshape(b * c, 1, h, w)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, kernel)

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cov = blur(x * y) - mx * my
    c1, c2 = (0.01 * PEAK) ** 2, (0.03 * PEAK) ** 2
    index = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return index.reshape(b, -1).mean(1)
