"""How much ranking do the Dreamer's error heads leave on the table? The shipped Dreamer-Walker's
uncertainty against a wider error model fitted another way on the same frozen model.

    python benchmarks/error_heads.py [--episodes 64] [--iters 12000] [--model DIR]

For every real transition ``(o, a, o')`` (held-out: every transition of the validation episodes
of the dataset; random actions: the first 50 steps of ``--episodes`` real Walker2d-v5 episodes)
the error is the RMSE, in dataset stds, of the model's deterministic one-step prediction from a
fresh start (``encode(o)`` -> ``transition(a)``), as the shifted-policy report computes it.
Candidates, ranked against it by Spearman correlation:

* ``uncertainty (served)``: ``decode(...).uncertainty``, the disagreement and the error heads
  (five 2 x 128 MLPs fitted after training by a Gaussian likelihood on 288k transitions);
* ``post-hoc error model``: one MLP (2 x 256, SiLU) from the standardised deterministic state
  after the step to the log of that error, fitted by least squares on up to 300k transitions
  of the training episodes (``--iters`` Adam steps of 512).

Prints the table and saves it to ``benchmarks/results/error_heads.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from uncertainty_ranking import (
    DATASET,
    fit_residual_model,
    random_action_transitions,
    training_sample,
    transitions,
)

from worldflux.core.model import WorldModel
from worldflux.data.provider import MinariBatchProvider
from worldflux.eval.fidelity import spearman
from worldflux.files import write_text_atomic

RESULTS = Path(__file__).with_name("results") / "error_heads.md"
ARTIFACT = Path(__file__).resolve().parents[1] / "exports" / "dreamer-walker-v0" / "model"
CHUNK = 8192


@torch.no_grad()
def measure(
    model: WorldModel, obs: torch.Tensor, act: torch.Tensor, nxt: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Per transition: the one-step ``error [N]``, the served ``uncertainty [N]`` and the
    deterministic state after the step ``deter [N, D]``."""
    std = model.obs_std
    out: dict[str, list[torch.Tensor]] = {"error": [], "uncertainty": [], "deter": []}
    for i in range(0, len(obs), CHUNK):
        state = model.transition(
            model.encode(obs[i : i + CHUNK]), act[i : i + CHUNK], deterministic=True
        )
        pred = model.decode(state)
        assert pred.uncertainty is not None, "the model has no uncertainty"
        out["error"].append(((pred.obs - nxt[i : i + CHUNK]) / std).pow(2).mean(-1).sqrt())
        out["uncertainty"].append(pred.uncertainty)
        out["deter"].append(state["deter"])
    return {k: torch.cat(v) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--iters", type=int, default=12_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", type=Path, default=ARTIFACT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.time()
    model = WorldModel.from_pretrained(args.model)
    model.eval()
    data = MinariBatchProvider(DATASET, validation_fraction=0.1)
    random_tr = random_action_transitions(model.config.action_dim, args.episodes, 50, args.seed)
    worlds = {"held-out episodes": transitions(data, "validation"), "random actions": random_tr}
    measured = {name: measure(model, *tr) for name, tr in worlds.items()}

    fit = measure(model, *training_sample(data, 300_000, args.seed))
    mu, sd = fit["deter"].mean(0), fit["deter"].std(0) + 1e-6
    net = fit_residual_model(
        (fit["deter"] - mu) / sd, fit["error"].clamp(min=1e-4).log(), args.iters, args.seed
    )
    table = {}
    with torch.no_grad():
        for name, m in measured.items():
            post_hoc = net((m["deter"] - mu) / sd).squeeze(-1)
            table[name] = {
                "uncertainty (served)": spearman(m["uncertainty"].numpy(), m["error"].numpy()),
                "post-hoc error model": spearman(post_hoc.numpy(), m["error"].numpy()),
            }
    lines = [
        f"# Error heads against a post-hoc error model ({args.model})",
        "",
        f"Spearman correlation with the deterministic one-step error from fresh starts (RMSE in "
        f"dataset stds). Held-out: {len(measured['held-out episodes']['error']):,} transitions "
        f"of the {DATASET} validation episodes; random actions: {len(random_tr[0]):,} "
        f"transitions of {args.episodes} real Walker2d-v5 episodes (first 50 steps). The "
        f"post-hoc model trained {args.iters:,} steps on {len(fit['error']):,} training "
        f"transitions. Seed {args.seed}; torch {torch.__version__}, 1 thread; "
        f"{time.time() - started:.0f} s.",
        "",
        "| candidate | held-out episodes | random actions |",
        "|---|---:|---:|",
        *(
            f"| {c} | {table['held-out episodes'][c]:.3f} | {table['random actions'][c]:.3f} |"
            for c in table["random actions"]
        ),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    write_text_atomic(RESULTS, text)


if __name__ == "__main__":
    main()
