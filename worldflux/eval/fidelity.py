"""How good is a learned simulator? Open-loop fidelity on held-out episodes.

From windows of held-out episodes, the model encodes the first observation and imagines the
*logged* actions (deterministically); at each horizon k the report compares its k-th prediction
with what really happened:

* ``obs_nrmse`` - RMSE of observations in units of each dimension's dataset std (train split);
  for images, in units of the full pixel range (255);
* ``reward_rmse`` and ``reward_pearson`` (correlation of predicted and real rewards);
* ``continue_accuracy`` - whether ``continue > 0.5`` matches ``1 - termination``, and
  ``termination_recall`` - the share of real terminations predicted (NaN when there are none);
* for images, ``psnr`` and ``ssim`` of the predicted frame (rounded and clipped to 0-255 pixels,
  as a dream env shows it) against the real one, averaged over windows;
* ``uncertainty_spearman`` - for models with an uncertainty, the Spearman rank correlation of the
  uncertainty at step k with that window's observation error (NaN for the baselines): how well
  the uncertainty ranks the errors on the data.

Two baselines get the same numbers: ``copy`` (the first observation repeated, the mean train
reward, always continue) and ``linear`` (a least-squares one-step model of the observation change,
reward and termination fitted on the train split, rolled out; vector observations only). Steps
past an episode's end are excluded.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.batch_provider import BatchRequest
from ..core.model import WorldModel
from ..core.payloads import Batch
from ..core.state import State
from ..data.provider import MinariBatchProvider
from ..files import save_figure_atomic, write_text_atomic
from .images import psnr, ssim

DEFAULT_HORIZONS = (1, 5, 15, 50)
METRICS = (
    "obs_nrmse",
    "reward_rmse",
    "reward_pearson",
    "continue_accuracy",
    "termination_recall",
    "uncertainty_spearman",
)
#: columns added for image observations
IMAGE_METRICS = ("psnr", "ssim")


@dataclass
class FidelityReport:
    """Metrics per predictor (``model``, ``copy``, ``linear``) and horizon k."""

    horizons: list[int]
    windows: int
    metrics: dict[str, dict[int, dict[str, float]]]
    notes: list[str] = field(default_factory=list)
    #: a few windows for plotting: real / model / linear observations ``[W, H, D]``
    examples: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "horizons": self.horizons,
            "windows": self.windows,
            "metrics": {
                name: {str(k): v for k, v in per_k.items()} for name, per_k in self.metrics.items()
            },
            "notes": self.notes,
        }

    def to_markdown(self) -> str:
        first = next(iter(self.metrics.values()))[self.horizons[0]]
        columns = [m for m in (*METRICS, *IMAGE_METRICS) if m in first]
        lines = [
            f"Open-loop fidelity on {self.windows} held-out windows (logged actions).",
            "",
            "| k | predictor | " + " | ".join(columns) + " |",
            "|---|---|" + "---|" * len(columns),
        ]
        for k in self.horizons:
            for name, per_k in self.metrics.items():
                row = per_k[k]
                cells = " | ".join(_fmt(row[m]) for m in columns)
                lines.append(f"| {k} | {name} | {cells} |")
        lines += [f"\n{note}" for note in self.notes]
        return "\n".join(lines) + "\n"

    def save(self, directory: Path, stem: str = "fidelity") -> list[Path]:
        """Write ``<stem>.json``, ``<stem>.md`` and ``<stem>.png``; return the paths."""
        directory.mkdir(parents=True, exist_ok=True)
        paths = [directory / f"{stem}.json", directory / f"{stem}.md"]
        write_text_atomic(
            paths[0], json.dumps(without_nan(self.to_dict()), indent=2, allow_nan=False) + "\n"
        )
        write_text_atomic(paths[1], self.to_markdown())
        if self.examples:
            paths.append(directory / f"{stem}.png")
            self.plot(paths[-1])
        elif "psnr" in next(iter(self.metrics.values()))[self.horizons[0]]:
            paths.append(directory / f"{stem}.png")
            self.plot_image_metrics(paths[-1])
        return paths

    def plot_image_metrics(self, path: Path) -> None:
        """PSNR and SSIM against the horizon k, one line per predictor (image reports)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
        for ax, metric in zip(axes, ("psnr", "ssim"), strict=True):
            for name, per_k in self.metrics.items():
                ax.plot(self.horizons, [per_k[k][metric] for k in self.horizons], "o-", label=name)
            ax.set_xscale("log")
            ax.set_xlabel("k (steps ahead)", fontsize=8)
            ax.set_title(f"{metric.upper()} ({self.windows} held-out windows)", fontsize=9)
        axes[0].legend(fontsize=8)
        fig.tight_layout()
        save_figure_atomic(fig, path, dpi=90)
        plt.close(fig)

    def plot(self, path: Path, dims: int = 3, windows: int = 3) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        real = self.examples["real"]
        n_w, n_d = min(windows, real.shape[0]), min(dims, real.shape[2])
        fig, axes = plt.subplots(n_w, n_d, figsize=(4 * n_d, 2.6 * n_w), squeeze=False)
        steps = np.arange(1, real.shape[1] + 1)
        for w in range(n_w):
            for d in range(n_d):
                ax = axes[w][d]
                ax.plot(steps, real[w, :, d], "k-", label="real")
                ax.plot(steps, self.examples["model"][w, :, d], "C0-", label="model")
                if "linear" in self.examples:
                    ax.plot(steps, self.examples["linear"][w, :, d], "C1--", label="linear")
                ax.set_title(f"window {w}, obs[{d}]", fontsize=9)
                ax.set_xlabel("k (steps ahead)", fontsize=8)
        axes[0][0].legend(fontsize=8)
        fig.tight_layout()
        save_figure_atomic(fig, path, dpi=90)
        plt.close(fig)


def _fmt(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.4f}"


def without_nan(obj: Any) -> Any:
    """``obj`` with NaN floats replaced by None (strict JSON has no NaN)."""
    if isinstance(obj, dict):
        return {k: without_nan(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [without_nan(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two ``[n]`` arrays (average ranks for ties; NaN when
    either is constant or n < 3)."""
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")

    def ranks(x: np.ndarray) -> np.ndarray:
        order = np.argsort(x, kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x), dtype=np.float64)
        _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
        sums = np.bincount(inverse, weights=r)
        return (sums / counts)[inverse]

    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:  # constant: correlation undefined
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _metrics(
    pred_obs: np.ndarray,
    pred_rew: np.ndarray,
    pred_cont: np.ndarray,
    real: dict[str, np.ndarray],
    scale: np.ndarray | float,
    k: int,
    uncertainty: np.ndarray | None = None,
    latent_error: np.ndarray | None = None,
    *,
    image: bool = False,
) -> dict[str, float]:
    """Metrics of step k (1-based) over the windows still inside their episode.

    ``latent_error [W, H]`` (decoder-free models) replaces the observation error as what the
    uncertainty should rank; ``image`` adds :data:`IMAGE_METRICS`."""
    valid = real["valid"][:, k - 1]
    names = (*METRICS, *IMAGE_METRICS) if image else METRICS
    if not valid.any():
        return {m: float("nan") for m in names}
    err = (pred_obs[:, k - 1] - real["obs"][:, k])[valid] / scale
    per_window = np.sqrt(np.mean(err.reshape(len(err), -1) ** 2, axis=1))
    if latent_error is not None:
        per_window = latent_error[:, k - 1][valid]
    rew_p, rew_r = pred_rew[:, k - 1][valid], real["rewards"][:, k - 1][valid]
    term = real["terminations"][:, k - 1][valid]
    cont_pred = pred_cont[:, k - 1][valid] > 0.5
    out = {
        "obs_nrmse": float(np.sqrt(np.mean(err.reshape(len(err), -1) ** 2))),
        "reward_rmse": float(np.sqrt(np.mean((rew_p - rew_r) ** 2))),
        "reward_pearson": _pearson(rew_p, rew_r),
        "continue_accuracy": float(np.mean(cont_pred == ~term)),
        "termination_recall": float(np.mean(~cont_pred[term])) if term.any() else float("nan"),
        "uncertainty_spearman": float("nan")
        if uncertainty is None
        else spearman(uncertainty[:, k - 1][valid], per_window),
    }
    if image:
        shown = torch.from_numpy(np.clip(np.rint(pred_obs[:, k - 1][valid]), 0, 255))
        truth = torch.from_numpy(real["obs"][:, k][valid])
        out["psnr"] = float(psnr(shown, truth).mean())
        out["ssim"] = float(ssim(shown, truth).mean())
    return out


def _fit_linear(data: MinariBatchProvider) -> np.ndarray:
    """Least squares ``[obs, action, 1] -> [obs' - obs, reward, termination]`` on the train split."""
    s = data.store
    steps = data.split_steps("train")
    before, after = s.obs_rows(steps)
    x = np.concatenate([s.obs[before], s.actions[steps], np.ones((len(steps), 1), np.float32)], 1)
    y = np.concatenate(
        [s.obs[after] - s.obs[before], s.rewards[steps, None], s.terminations[steps, None]], 1
    )
    coef, *_ = np.linalg.lstsq(x.astype(np.float64), y.astype(np.float64), rcond=None)
    return coef


def _rollout_linear(
    coef: np.ndarray, obs0: np.ndarray, actions: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    obs, preds_o, preds_r, preds_c = obs0.astype(np.float64), [], [], []
    ones = np.ones((len(obs0), 1))
    for t in range(actions.shape[1]):
        out = np.concatenate([obs, actions[:, t], ones], 1) @ coef
        d = obs.shape[1]
        obs = obs + out[:, :d]
        preds_o.append(obs)
        preds_r.append(out[:, d])
        preds_c.append(1.0 - out[:, d + 1])
    return np.stack(preds_o, 1), np.stack(preds_r, 1), np.stack(preds_c, 1)


def _latent_error(model: WorldModel, states: State, obs: torch.Tensor) -> np.ndarray:
    """``[W, H]``: distance of the imagined latents (``states`` ``[H + 1, W, ...]``) from the
    encodings of the real observations ``obs [W, H + 1, *O]`` they should match."""
    keys = model.latent_keys()
    w, h = obs.shape[0], obs.shape[1] - 1
    real = model.encode(obs[:, 1:].flatten(0, 1))
    imagined = torch.cat([states[k][1:].transpose(0, 1).flatten(2) for k in keys], -1)
    target = torch.cat([real[k].reshape(w, h, -1) for k in keys], -1)
    return (imagined - target).float().norm(dim=-1).cpu().numpy()


def _padded_with_first(batch: Batch) -> torch.Tensor:
    """``batch.actions [B, T, A]`` with the padding past an episode's end replaced by the
    window's first action: a valid action for every model (one-hot for Discrete spaces), whose
    predictions there are never scored."""
    actions = batch.actions.clone()
    pad = ~batch.valid.bool()
    actions[pad] = actions[:, :1].expand_as(actions)[pad]
    return actions


@torch.no_grad()
def fidelity_report(
    model: WorldModel,
    data: MinariBatchProvider,
    *,
    horizons: tuple[int, ...] = DEFAULT_HORIZONS,
    windows: int = 256,
    seed: int = 0,
    split: str = "validation",
) -> FidelityReport:
    """Open-loop fidelity of ``model`` on ``windows`` windows of ``split`` episodes."""
    notes: list[str] = []
    longest = int(data.store.lengths[data.episodes[split]].max())  # type: ignore[index]
    usable = sorted({k for k in horizons if 1 <= k <= longest})
    if len(usable) < len(horizons):
        notes.append(
            f"Horizons above {longest} (the longest {split} episode) were skipped: "
            f"{sorted(set(horizons) - set(usable))}."
        )
    horizon = max(usable)
    batch = data.get_batch(
        BatchRequest(windows, horizon, split=split, device=str(model.device), seed=seed)  # type: ignore[arg-type]
    )
    model.eval()
    state = model.encode(batch.obs[:, 0])
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        traj = model.rollout(state, _padded_with_first(batch).transpose(0, 1), deterministic=True)
    real = {
        "obs": batch.obs.float().cpu().numpy(),
        "rewards": batch.rewards.cpu().numpy(),
        "terminations": batch.terminations.bool().cpu().numpy(),
        "valid": batch.valid.bool().cpu().numpy(),
    }
    image = data.store.obs_layout.kind == "image"
    scale: np.ndarray | float = 255.0 if image else data.stats.obs_std  # type: ignore[assignment]
    latent_error = None
    if model.decodes_observations:
        model_obs = traj.obs.transpose(0, 1).float().cpu().numpy()
    else:
        model_obs = np.full_like(real["obs"][:, 1:], np.nan)
        latent_error = _latent_error(model, traj.states, batch.obs)
        notes.append(
            "The model has no observation decoder: obs_nrmse is undefined (NaN) and "
            "uncertainty_spearman ranks the latent error ||z_k - encode(o_k)|| instead."
        )
    model_rew = traj.rewards.transpose(0, 1).float().cpu().numpy()
    model_cont = traj.continues.transpose(0, 1).float().cpu().numpy()
    n, h = model_rew.shape
    copy_obs = np.repeat(real["obs"][:, :1], h, axis=1)
    copy_rew = np.full((n, h), data.stats.reward_mean)
    predictors: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {
        "model": (model_obs, model_rew, model_cont),
        "copy": (copy_obs, copy_rew, np.ones((n, h))),
    }
    examples = {"real": real["obs"][:, 1:], "model": model_obs}
    if image:
        notes.append("The linear baseline is skipped for image observations.")
    else:
        coef = _fit_linear(data)
        lin = _rollout_linear(coef, real["obs"][:, 0], batch.actions.cpu().numpy())
        predictors["linear"] = lin
        examples["linear"] = lin[0]
    u = None if traj.uncertainty is None else traj.uncertainty.transpose(0, 1).float().cpu().numpy()
    metrics = {
        name: {
            k: _metrics(
                *preds,
                real,
                scale,
                k,
                *((u, latent_error) if name == "model" else ()),
                image=image and model.decodes_observations,
            )
            for k in usable
        }
        for name, preds in predictors.items()
    }
    return FidelityReport(usable, windows, metrics, notes, examples if not image else {})
