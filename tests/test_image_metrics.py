"""PSNR and SSIM of predicted frames, and the image columns of the fidelity report."""

from __future__ import annotations

import numpy as np
import torch
from synthetic import moving_dot_episodes

import worldflux as wf
from worldflux.data.episodes import EpisodeStore
from worldflux.data.provider import MinariBatchProvider
from worldflux.data.spaces import ActionLayout, ObservationLayout
from worldflux.eval import fidelity_report
from worldflux.eval.images import psnr, ssim


def test_ssim_equals_the_formula_over_one_gaussian_window() -> None:
    """On 11 x 11 frames the SSIM map has one value: the formula with Gaussian-weighted means,
    variances and covariance, computed here with explicit sums."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (2, 3, 11, 11), generator=g).float()
    y = (x + torch.randint(-40, 41, x.shape, generator=g)).clamp(0, 255)
    r = np.arange(11) - 5.0
    w = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5**2))
    w /= w.sum()
    expected = np.zeros(2)
    for b in range(2):
        for c in range(3):
            a, t = x[b, c].double().numpy(), y[b, c].double().numpy()
            ma, mt = (w * a).sum(), (w * t).sum()
            va, vt = (w * a * a).sum() - ma**2, (w * t * t).sum() - mt**2
            cov = (w * a * t).sum() - ma * mt
            c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
            expected[b] += (
                ((2 * ma * mt + c1) * (2 * cov + c2)) / ((ma**2 + mt**2 + c1) * (va + vt + c2)) / 3
            )
    np.testing.assert_allclose(ssim(x, y).numpy(), expected, rtol=1e-4)
    assert torch.allclose(ssim(x, x), torch.ones(2))
    assert float(psnr(torch.zeros(1, 4), torch.full((1, 4), 255.0))) == 0.0


def test_the_fidelity_report_of_an_image_model_gives_psnr_and_ssim() -> None:
    episodes = moving_dot_episodes(20, 12, size=16, seed=0, dot=4)
    store = EpisodeStore.from_episodes(
        episodes, ObservationLayout("image", (3, 16, 16)), ActionLayout("discrete", 4)
    )
    data = MinariBatchProvider.from_store(store, validation_fraction=0.5, seed=0)
    torch.manual_seed(0)
    model = wf.create_world_model("token:tiny", obs_shape=(3, 16, 16), action_dim=4)
    report = fidelity_report(model, data, horizons=(1, 5), windows=64, seed=0)
    for name in ("model", "copy"):
        for k in (1, 5):
            row = report.metrics[name][k]
            assert 0 < row["psnr"] < 148 and -1 <= row["ssim"] <= 1, (name, k, row)
    assert "| psnr | ssim |" in report.to_markdown()
    # the copy baseline, directly: the first frame of each window against the k-th next one
    from worldflux.core.batch_provider import BatchRequest

    batch = data.get_batch(BatchRequest(64, 5, split="validation", device="cpu", seed=0))
    direct = psnr(batch.obs[:, 0], batch.obs[:, 5])[batch.valid[:, 4].bool()].mean()
    assert abs(report.metrics["copy"][5]["psnr"] - float(direct)) < 1e-3
