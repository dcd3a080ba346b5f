"""The discrete frame tokeniser of the token family (VQ autoencoder with an EMA codebook)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from synthetic import moving_dot_episodes

from worldflux.core.errors import ConfigError
from worldflux.eval.images import psnr
from worldflux.models.token.tokenizer import (
    FrameTokenizer,
    TokenizerConfig,
    to_pixels,
    to_unit,
)


def dot_frames(episodes: int, seed: int) -> torch.Tensor:
    """``uint8 [N, 3, 32, 32]`` frames of a 4 x 4 white dot on black."""
    eps = moving_dot_episodes(episodes, 40, size=32, seed=seed, dot=4)
    return torch.tensor(np.concatenate([e["observations"] for e in eps])).permute(0, 3, 1, 2)


def centre(frames: torch.Tensor) -> torch.Tensor:
    """Brightness-weighted centre ``[N, 2]`` (row, column) of frames ``[N, C, H, W]``."""
    m = frames.float().mean(1)
    w = m / m.flatten(1).sum(1).clamp(min=1e-6)[:, None, None]
    rows = torch.arange(m.shape[1], dtype=torch.float32).view(1, -1, 1)
    cols = torch.arange(m.shape[2], dtype=torch.float32).view(1, 1, -1)
    return torch.stack([(w * rows).sum((1, 2)), (w * cols).sum((1, 2))], 1)


def test_bad_configs_and_inputs_are_named() -> None:
    with pytest.raises(ConfigError, match="size / grid must be a power of two"):
        FrameTokenizer(TokenizerConfig(size=64, grid=6))
    with pytest.raises(ConfigError, match="codes: expected an int >= 1"):
        FrameTokenizer(TokenizerConfig(codes=0))
    with pytest.raises(ConfigError, match="ema_decay"):
        FrameTokenizer(TokenizerConfig(ema_decay=1.0))
    tok = FrameTokenizer(TokenizerConfig(size=32, grid=8, codes=16, code_dim=8, depth=8))
    with pytest.raises(
        ConfigError, match=r"expected frames \[B, 3, 32, 32\], got \[2, 3, 64, 64\]"
    ):
        tok.encode(torch.zeros(2, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(ConfigError, match=r"expected tokens \[B, 64\], got \[2, 16\]"):
        tok.decode(torch.zeros(2, 16, dtype=torch.long))


def test_pixel_conversions_and_psnr() -> None:
    frames = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(to_pixels(to_unit(frames)), frames)
    assert torch.isinf(psnr(frames, frames)).logical_not().all()  # capped, not inf
    noisy = (frames.float() + 5.1).clamp(max=255)
    assert (psnr(noisy, frames) > 30).all()


def test_the_codebook_moves_only_in_training_and_dead_codes_restart() -> None:
    torch.manual_seed(0)
    tok = FrameTokenizer(TokenizerConfig(size=32, grid=8, codes=32, code_dim=8, depth=8))
    frames = dot_frames(2, 0)[:16]
    tok.eval()
    before = tok.quantizer.codebook.clone()
    tok.loss(frames)
    assert torch.equal(tok.quantizer.codebook, before)
    tok.train()
    tok.loss(frames)  # first batch: codes start at encoder outputs
    assert not torch.equal(tok.quantizer.codebook, before)
    z = tok._latents(frames).detach()
    codes = tok.quantizer.lookup(z)
    unused = torch.tensor(sorted(set(range(32)) - set(codes.tolist())))
    assert len(unused) > 0
    tok.quantizer.cluster_size[unused] = 0.0  # out of use, and not assigned in this batch
    tok.quantizer.update(z, codes)
    assert (tok.quantizer.cluster_size[unused] == 1.0).all()  # restarted at batch rows
    rows = {tuple(r.tolist()) for r in z.round(decimals=5)}
    restarted = tok.quantizer.codebook[unused].round(decimals=5)
    assert all(tuple(c.tolist()) in rows for c in restarted)


def test_tokens_round_trip_through_a_saved_state() -> None:
    torch.manual_seed(0)
    config = TokenizerConfig(size=32, grid=8, codes=16, code_dim=8, depth=8)
    tok = FrameTokenizer(config)
    tok.loss(dot_frames(1, 0))  # initialises the codebook
    tok.eval()
    copy = FrameTokenizer(config)
    copy.load_state_dict(tok.state_dict())
    copy.eval()
    frames = dot_frames(1, 1)
    tokens = tok.encode(frames)
    assert tokens.shape == (len(frames), 64) and tokens.dtype == torch.long
    assert int(tokens.min()) >= 0 and int(tokens.max()) < 16
    assert torch.equal(copy.encode(frames), tokens)
    torch.testing.assert_close(copy.decode(tokens), tok.decode(tokens))


def test_the_tokeniser_learns_moving_dot_frames() -> None:
    """600 Adam steps on 32 x 32 dot frames (8 x 8 tokens, 64 codes): held-out frames come back
    at >= 26 dB PSNR (the mean frame scores about 18) with the dot within 1.5 pixels of its
    place on average."""
    torch.manual_seed(0)
    train, test = dot_frames(12, 0), dot_frames(4, 1)
    tok = FrameTokenizer(TokenizerConfig(size=32, grid=8, codes=64, code_dim=16, depth=16))
    opt = torch.optim.Adam(tok.parameters(), 2e-3)
    for _ in range(600):
        loss, _ = tok.loss(train[torch.randint(len(train), (32,))])
        opt.zero_grad()
        loss.backward()
        opt.step()
    tok.eval()
    with torch.no_grad():
        rec = to_pixels(tok.decode(tok.encode(test)))
    mean_frame = test.float().mean(0, keepdim=True).expand_as(test)
    assert psnr(rec, test).mean() >= 26.0, psnr(rec, test).mean()
    assert psnr(mean_frame, test).mean() < 20.0
    assert (centre(rec) - centre(test)).norm(dim=1).mean() < 1.5


def test_changed_pixels_weigh_more_in_the_reconstruction_loss() -> None:
    """With ``changed_pixel_weight`` w, the loss is the pixel errors weighted w where marked
    (normalised by the mean weight) plus the commitment term; ``recon`` stays the plain MSE."""
    torch.manual_seed(0)
    frames = dot_frames(1, 0)[:4]
    changed = torch.zeros(4, 32, 32, dtype=torch.bool)
    changed[:, :8] = True
    tok = FrameTokenizer(TokenizerConfig(size=32, grid=8, codes=16, code_dim=8, depth=8,
                                         changed_pixel_weight=5.0))  # fmt: skip
    tok.loss(frames)  # initialises the codebook
    tok.eval()  # the codebook stays put from here
    with torch.no_grad():
        plain, parts = tok.loss(frames)
        weighted, _ = tok.loss(frames, changed)
        err = (tok.decode(tok.encode(frames)) - to_unit(frames)).pow(2)
    weight = 1.0 + 4.0 * changed.float()[:, None]
    expected = (err * weight).mean() / weight.mean() + 0.25 * parts["commit"]
    torch.testing.assert_close(weighted, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(plain, parts["recon"] + 0.25 * parts["commit"])
    assert not torch.isclose(weighted, plain)
