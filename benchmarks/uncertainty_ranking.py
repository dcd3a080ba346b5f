"""Which uncertainty ranks a dream's one-step errors off the data? Candidates measured on the
shipped ensemble (``exports/ensemble-walker-v0``) under uniform random actions in the real
Walker2d-v5, beside the held-out episodes of its dataset.

    python benchmarks/uncertainty_ranking.py [--episodes 64] [--steps 50] [--iters 12000]
        [--model RUN_OR_MODEL_DIR --name NAME]

For every real transition ``(o, a, o')`` (the first ``--steps`` steps of ``--episodes`` random
episodes from the real env's resets; held-out: every transition of the validation episodes) the
error is the deterministic one-step prediction's RMSE in units of each dimension's dataset std
(as the shifted-policy report computes it). Candidates, each ranked against that error by
Spearman correlation:

* what the dream serves as ``uncertainty``: the error heads' expected error for models with
  error heads (the shipped artifact since 2026-12-04), else ``epistemic``;
* the ensemble's own estimates: ``epistemic`` (the largest distance of an elite's mean from the
  elites' mean, in normalised target units) and
  ``aleatoric`` (the mean norm of the elites' predicted std);
* the same two in the error's units (observation dimensions only, each in dataset stds), and
  their sum as the mixture's total predictive std (variance of the elites' means plus their
  mean variance);
* a **learned residual model**: an MLP (2 x 256, SiLU) from the normalised ``(o, a)`` to the log
  of the model's own one-step error, fitted by least squares on up to 300k transitions of the
  training episodes (the model's training residuals), ``--iters`` Adam steps of 512;
* that model combined with ``epistemic`` (mapped to error units by a log-linear fit on the
  held-out transitions): their maximum.

Prints the table and saves it to ``benchmarks/results/uncertainty_ranking.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from worldflux.core.model import WorldModel
from worldflux.data.provider import MinariBatchProvider
from worldflux.dream.shifted import real_rollouts
from worldflux.eval.fidelity import spearman
from worldflux.files import write_text_atomic

RESULTS = Path(__file__).with_name("results") / "uncertainty_ranking.md"
ARTIFACT = Path(__file__).resolve().parents[1] / "exports" / "ensemble-walker-v0" / "model"
DATASET = "worldflux/walker2d/mixed-v0"
CHUNK = 8192


def transitions(data: MinariBatchProvider, split: str) -> tuple[torch.Tensor, ...]:
    """``(obs [N, D], action [N, A], next obs [N, D])`` of every step of ``split``."""
    s = data.store
    steps = data.split_steps(split)  # type: ignore[arg-type]
    before, after = s.obs_rows(steps)
    return tuple(
        torch.as_tensor(x, dtype=torch.float32)
        for x in (s.obs[before], s.actions[steps], s.obs[after])
    )


def training_sample(data: MinariBatchProvider, size: int, seed: int) -> tuple[torch.Tensor, ...]:
    """``(obs [N, D], action [N, A], next obs [N, D])`` of ``size`` training transitions drawn
    without replacement (seeded; all of them when the split is smaller)."""
    train = transitions(data, "train")
    keep = torch.randperm(len(train[0]), generator=torch.Generator().manual_seed(seed))[:size]
    return tuple(t[keep] for t in train)


def random_action_transitions(
    act_dim: int, episodes: int, steps: int, seed: int
) -> tuple[torch.Tensor, ...]:
    """``(obs [N, D], action [N, A], next obs [N, D])`` of the first ``steps`` steps of
    ``episodes`` real Walker2d-v5 episodes under uniform random actions."""
    rng = np.random.default_rng(seed)
    real = real_rollouts(
        "Walker2d-v5",
        lambda o: rng.uniform(-1, 1, (len(o), act_dim)).astype(np.float32),
        episodes,
        steps,
        seed,
    )
    rows, t = np.nonzero(real.alive)
    return tuple(
        torch.as_tensor(x, dtype=torch.float32)
        for x in (real.obs[rows, t], real.actions[rows, t], real.obs[rows, t + 1])
    )


@torch.no_grad()
def measure(
    model: WorldModel,
    obs: torch.Tensor,
    act: torch.Tensor,
    nxt: torch.Tensor,
    obs_std: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Per transition ``[N]``: the one-step error and the ensemble's uncertainty candidates."""
    dyn = model._dynamics  # the ensemble's members
    d = obs.shape[1]
    to_error_units = dyn.target_std[:d] / obs_std  # normalised (o' - o) -> dataset stds of o
    out: dict[str, list[torch.Tensor]] = {}
    for i in range(0, len(obs), CHUNK):
        o, a, o2 = obs[i : i + CHUNK], act[i : i + CHUNK], nxt[i : i + CHUNK]
        served = model.decode(model.transition(model.encode(o), a, deterministic=True))
        pred = served.obs
        feats = model._features(o, a, None)
        x = feats.unsqueeze(0).expand(dyn.config.elites, len(o), feats.shape[1])
        mean, logvar, _ = dyn.heads(x, dyn.elite_idx)
        mu = mean[..., :d] * to_error_units
        sd = (0.5 * logvar[..., :d]).exp() * to_error_units
        rows = {
            "error": ((pred - o2) / obs_std).pow(2).mean(-1).sqrt(),
            "uncertainty (served)": served.uncertainty,
            "epistemic": (mean - mean.mean(0)).norm(dim=-1).amax(0),
            "aleatoric": (0.5 * logvar).exp().norm(dim=-1).mean(0),
            "epistemic (error units)": (mu - mu.mean(0)).norm(dim=-1).amax(0) / d**0.5,
            "aleatoric (error units)": sd.pow(2).mean(-1).sqrt().mean(0),
            "total (error units)": (mu.var(0, unbiased=False) + sd.pow(2).mean(0)).mean(-1).sqrt(),
        }
        for k, v in rows.items():
            out.setdefault(k, []).append(v)
    return {k: torch.cat(v) for k, v in out.items()}


def fit_residual_model(
    x: torch.Tensor, log_error: torch.Tensor, iters: int, seed: int
) -> torch.nn.Module:
    """MLP ``x -> log error`` by least squares (Adam, batches of 512)."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], 256),
        torch.nn.SiLU(),
        torch.nn.Linear(256, 256),
        torch.nn.SiLU(),
        torch.nn.Linear(256, 1),
    )
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(iters):
        idx = torch.randint(len(x), (512,))
        loss = (net(x[idx]).squeeze(-1) - log_error[idx]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--iters", type=int, default=12_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--model",
        type=Path,
        default=ARTIFACT,
        help="a saved ensemble trained on the same dataset (default: the shipped artifact)",
    )
    parser.add_argument(
        "--name", default="", help="results file suffix: uncertainty_ranking-NAME.md"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.time()
    model = WorldModel.from_pretrained(args.model)
    model.eval()
    data = MinariBatchProvider(DATASET, validation_fraction=0.1)
    obs_std = torch.as_tensor(data.stats.obs_std, dtype=torch.float32)

    random_tr = random_action_transitions(
        model.config.action_dim, args.episodes, args.steps, args.seed
    )
    worlds = {"held-out episodes": transitions(data, "validation"), "random actions": random_tr}
    measured = {name: measure(model, *tr, obs_std) for name, tr in worlds.items()}

    # the learned residual model, fitted on (a sample of) the training episodes' residuals
    o, a, o2 = training_sample(data, 300_000, args.seed)
    mu, sd = o.mean(0), o.std(0) + 1e-6
    err_train = measure(model, o, a, o2, obs_std)["error"]
    net = fit_residual_model(
        torch.cat([(o - mu) / sd, a], -1), err_train.clamp(min=1e-4).log(), args.iters, args.seed
    )
    held = measured["held-out episodes"]
    fit = torch.linalg.lstsq(
        torch.stack([held["epistemic"].clamp(min=1e-8).log(), torch.ones_like(held["error"])], 1),
        held["error"].clamp(min=1e-4).log().unsqueeze(1),
    ).solution.squeeze(1)
    with torch.no_grad():
        for name, (wo, wa, _) in worlds.items():
            m = measured[name]
            m["learned residual model"] = net(torch.cat([(wo - mu) / sd, wa], -1)).squeeze(-1).exp()
            mapped = (fit[0] * m["epistemic"].clamp(min=1e-8).log() + fit[1]).exp()
            m["max(learned, epistemic)"] = torch.maximum(m["learned residual model"], mapped)

    names = [k for k in measured["random actions"] if k != "error"]
    label = "Ensemble-Walker, shipped artifact" if args.model == ARTIFACT else str(args.model)
    lines = [
        f"# Which uncertainty ranks one-step errors? ({label})",
        "",
        f"Spearman correlation of each candidate with the deterministic one-step error (RMSE in "
        f"dataset stds). Held-out: {len(held['error']):,} transitions of the {DATASET} validation "
        f"episodes; random actions: {len(random_tr[0]):,} transitions of {args.episodes} real "
        f"Walker2d-v5 episodes (first {args.steps} steps). The learned residual model trained "
        f"{args.iters:,} steps on {len(o):,} training transitions. Seed {args.seed}; torch "
        f"{torch.__version__}, 1 thread; {time.time() - started:.0f} s.",
        "",
        "| candidate | held-out episodes | random actions |",
        "|---|---:|---:|",
        *(
            f"| {k} | {spearman(measured['held-out episodes'][k].numpy(), held['error'].numpy()):.3f} "
            f"| {spearman(measured['random actions'][k].numpy(), measured['random actions']['error'].numpy()):.3f} |"
            for k in names
        ),
        "",
        f"One-step error (RMSE over transitions): held-out {held['error'].pow(2).mean().sqrt():.3f}, "
        f"random actions {measured['random actions']['error'].pow(2).mean().sqrt():.3f}.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    out = RESULTS.with_name(f"uncertainty_ranking-{args.name}.md") if args.name else RESULTS
    write_text_atomic(out, text)


if __name__ == "__main__":
    main()
