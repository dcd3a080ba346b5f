"""A discrete frame tokeniser: a convolutional autoencoder whose bottleneck is a vector-quantised
grid (VQ-VAE, van den Oord et al., 2017), the first stage of an IRIS-like token world model
(Micheli et al., 2023): each frame becomes ``grid x grid`` integer tokens from a codebook of
``codes`` entries, and a token grid decodes back to a frame.

Shapes: B = frames, C/H/W = channels/height/width, G = ``grid``, N = G*G tokens per frame,
D = ``code_dim``, K = ``codes``.

The codebook starts at random encoder outputs of the first training batch and learns by
exponential moving averages of the encoder outputs assigned to each code (VQ-VAE's appendix;
Razavi et al., 2019), not by gradients; codes that fall out of use (an
average assignment count below ``dead_code_threshold``) restart at a random encoder output of the
current batch, so the whole codebook stays in use. The encoder learns through the
straight-through estimator, with the commitment loss ``commitment * ||z - sg(e)||^2``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...core.errors import ConfigError


@dataclass
class TokenizerConfig:
    """Sizes and learning settings of :class:`FrameTokenizer`.

    Attributes:
        channels, size: frames are ``[channels, size, size]`` (uint8 pixels or floats in
            ``[-0.5, 0.5]``).
        grid: tokens per side; ``size / grid`` must be a power of two (stride-2 stages).
        codes: codebook entries K.
        code_dim: width D of a code.
        depth: channels of the first conv stage (doubling per stage).
        commitment: weight of the commitment loss.
        ema_decay: decay of the codebook's moving averages.
        dead_code_threshold: codes whose average assignment count per batch falls below this
            restart at a random encoder output.
        changed_pixel_weight: weight of the pixels marked as changing (``loss(frames,
            changed)``) in the reconstruction loss, relative to 1 for the rest: small moving
            objects (a ball, a paddle) cover a few pixels of a static frame and are otherwise
            the last thing an autoencoder learns.
    """

    channels: int = 3
    size: int = 64
    grid: int = 8
    codes: int = 512
    code_dim: int = 64
    depth: int = 32
    commitment: float = 0.25
    ema_decay: float = 0.99
    dead_code_threshold: float = 0.1
    changed_pixel_weight: float = 1.0

    def validate(self) -> None:
        for name in ("channels", "size", "grid", "codes", "code_dim", "depth"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"TokenizerConfig.{name}: expected an int >= 1, got {value!r}.")
        ratio = self.size / self.grid
        if self.size % self.grid or ratio < 2 or 2 ** round(math.log2(ratio)) != ratio:
            raise ConfigError(
                f"TokenizerConfig: size / grid must be a power of two >= 2 (stride-2 stages), "
                f"got size {self.size} and grid {self.grid}."
            )
        if not 0.0 < self.ema_decay < 1.0:
            raise ConfigError(
                f"TokenizerConfig.ema_decay: expected in (0, 1), got {self.ema_decay}."
            )
        if self.changed_pixel_weight < 1:
            raise ConfigError(
                "TokenizerConfig.changed_pixel_weight: expected >= 1, got "
                f"{self.changed_pixel_weight}."
            )
        if self.commitment < 0 or self.dead_code_threshold < 0:
            raise ConfigError(
                "TokenizerConfig: expected commitment >= 0 and dead_code_threshold >= 0, got "
                f"{self.commitment} and {self.dead_code_threshold}."
            )

    @property
    def stages(self) -> int:
        return round(math.log2(self.size // self.grid))

    @property
    def tokens(self) -> int:
        """N, tokens per frame."""
        return self.grid * self.grid


def to_unit(frames: torch.Tensor) -> torch.Tensor:
    """uint8 pixels ``[..., C, H, W]`` -> floats in ``[-0.5, 0.5]``; floats pass unchanged."""
    return frames.float() / 255.0 - 0.5 if frames.dtype == torch.uint8 else frames.float()


def to_pixels(unit: torch.Tensor) -> torch.Tensor:
    """Floats in ``[-0.5, 0.5]`` -> uint8 pixels (rounded, clipped)."""
    return ((unit + 0.5) * 255.0).round().clamp(0, 255).to(torch.uint8)


class VectorQuantizer(nn.Module):
    """Nearest-code quantisation ``z [M, D] -> (codes [M], quantised [M, D])`` with an EMA
    codebook ``[K, D]`` (see the module docstring)."""

    codebook: torch.Tensor  # [K, D]
    cluster_size: torch.Tensor  # [K], EMA of assignments per batch
    embed_sum: torch.Tensor  # [K, D], EMA of the assigned rows' sums
    initialised: torch.Tensor  # bool scalar

    def __init__(self, codes: int, dim: int, decay: float, dead_code_threshold: float) -> None:
        super().__init__()
        self.decay, self.threshold = decay, dead_code_threshold
        self.register_buffer("codebook", torch.randn(codes, dim) * 0.1)
        self.register_buffer("cluster_size", torch.ones(codes))
        self.register_buffer("embed_sum", self.codebook.clone())
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def lookup(self, z: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code of each row ``[M, D] -> [M]``."""
        cb = self.codebook
        dist = z.pow(2).sum(1, keepdim=True) - 2.0 * z @ cb.t() + cb.pow(2).sum(1)[None]
        return dist.argmin(1)

    def embed(self, codes: torch.Tensor) -> torch.Tensor:
        """``[...] long -> [..., D]``."""
        return F.embedding(codes, self.codebook)

    @torch.no_grad()
    def update(self, z: torch.Tensor, codes: torch.Tensor) -> None:
        """One EMA step of the codebook towards the mean of its assigned rows ``z [M, D]``,
        then restart dead codes at random rows of ``z``."""
        k = self.codebook.shape[0]
        if not bool(self.initialised):  # data-dependent start: codes at random encoder outputs
            self.codebook.copy_(z[torch.randint(len(z), (k,), device=z.device)])
            self.embed_sum.copy_(self.codebook)
            self.initialised.fill_(True)
            codes = self.lookup(z)
        onehot = F.one_hot(codes, k).type_as(z)  # [M, K]
        self.cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(onehot.t() @ z, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + 1e-5) / (n + k * 1e-5) * n  # Laplace smoothing
        self.codebook.copy_(self.embed_sum / smoothed[:, None])
        dead = self.cluster_size < self.threshold
        if dead.any():
            picks = torch.randint(len(z), (int(dead.sum()),), device=z.device)
            self.codebook[dead] = z[picks]
            self.embed_sum[dead] = z[picks]
            self.cluster_size[dead] = 1.0

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training:
            self.update(z.detach(), self.lookup(z))
        codes = self.lookup(z)
        return codes, self.embed(codes)


class FrameTokenizer(nn.Module):
    """Frames ``[B, C, H, W]`` <-> tokens ``[B, N]`` (see the module docstring)."""

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        config.validate()
        self.config = c = config
        enc: list[nn.Module] = []
        ch = c.channels
        for i in range(c.stages):
            out = c.depth * 2**i
            enc += [nn.Conv2d(ch, out, 4, 2, 1), nn.GroupNorm(1, out), nn.SiLU()]
            ch = out
        enc += [nn.Conv2d(ch, ch, 3, 1, 1), nn.SiLU(), nn.Conv2d(ch, c.code_dim, 1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(c.code_dim, ch, 1), nn.SiLU()]
        dec += [nn.Conv2d(ch, ch, 3, 1, 1), nn.GroupNorm(1, ch), nn.SiLU()]
        for i in reversed(range(c.stages - 1)):
            out = c.depth * 2**i
            dec += [nn.ConvTranspose2d(ch, out, 4, 2, 1), nn.GroupNorm(1, out), nn.SiLU()]
            ch = out
        dec.append(nn.ConvTranspose2d(ch, c.channels, 4, 2, 1))
        self.decoder = nn.Sequential(*dec)
        self.quantizer = VectorQuantizer(c.codes, c.code_dim, c.ema_decay, c.dead_code_threshold)

    def _check(self, frames: torch.Tensor) -> None:
        c = self.config
        if frames.dim() != 4 or tuple(frames.shape[1:]) != (c.channels, c.size, c.size):
            raise ConfigError(
                f"FrameTokenizer: expected frames [B, {c.channels}, {c.size}, {c.size}], got "
                f"{list(frames.shape)}."
            )

    def _latents(self, frames: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B*N, D]`` encoder outputs, row-major over the grid."""
        self._check(frames)
        z = self.encoder(to_unit(frames))  # [B, D, G, G]
        return z.permute(0, 2, 3, 1).reshape(-1, self.config.code_dim)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> tokens [B, N]`` (long)."""
        return self.quantizer.lookup(self._latents(frames)).reshape(frames.shape[0], -1)

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens [B, N] -> frames [B, C, H, W]`` in ``[-0.5, 0.5]`` (unclipped)."""
        c = self.config
        if tokens.dim() != 2 or tokens.shape[1] != c.tokens:
            raise ConfigError(
                f"FrameTokenizer.decode: expected tokens [B, {c.tokens}], got {list(tokens.shape)}."
            )
        return self._decode_codes(self.quantizer.embed(tokens))

    def _decode_codes(self, q: torch.Tensor) -> torch.Tensor:
        """``[B, N, D] -> [B, C, H, W]``."""
        g = self.config.grid
        return self.decoder(q.reshape(q.shape[0], g, g, -1).permute(0, 3, 1, 2))

    def loss(
        self, frames: torch.Tensor, changed: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Reconstruction MSE (in ``[-0.5, 0.5]`` units; pixels where ``changed [B, H, W]`` (bool)
        is set weigh ``changed_pixel_weight``, normalised by the mean weight) + commitment;
        ``recon`` in the parts is the unweighted MSE. In training mode it also
        moves the codebook (EMA). Returns ``(total, parts)``; parts (detached) add ``perplexity``
        (the effective number of codes used by this batch) and ``tokens [B, N]``, the frames'
        codes after this step's codebook update (what :meth:`encode` now gives)."""
        z = self._latents(frames)
        codes, q = self.quantizer(z)
        commit = (z - q.detach()).pow(2).mean()
        q_st = z + (q - z).detach()  # straight-through
        recon = self._decode_codes(q_st.reshape(len(frames), self.config.tokens, -1))
        err = (recon - to_unit(frames)).pow(2)
        mse = err.mean()
        weighted = mse
        if changed is not None:
            if changed.shape != (len(frames), *frames.shape[2:]):
                raise ConfigError(
                    f"FrameTokenizer.loss: expected changed [B, H, W] = "
                    f"{[len(frames), *frames.shape[2:]]}, got {list(changed.shape)}."
                )
            weight = 1.0 + (self.config.changed_pixel_weight - 1.0) * changed.float()[:, None]
            weighted = (err * weight).mean() / weight.mean()
        usage = torch.bincount(codes, minlength=self.config.codes).float() / len(codes)
        perplexity = torch.exp(-(usage * (usage + 1e-10).log()).sum())
        total = weighted + self.config.commitment * commit
        parts = {
            "recon": mse.detach(),
            "commit": commit.detach(),
            "perplexity": perplexity,
            "tokens": codes.reshape(len(frames), -1),
        }
        return total, parts
