"""Are the shipped dreams honest away from their data? Each shipped dream environment against the
real environment, side by side in one run, under the shifted policies of
:mod:`worldflux.dream.shifted` (card defaults, ONNX Runtime as served).

    python benchmarks/honest_dreams.py [--episodes 64] [--cards dreamer-walker ensemble-walker]

Per card and policy: the median episode length (real, dream, and their ratio; the target under
random actions is a ratio within 0.5-2), returns, the one-step observation error from real states
and the Spearman correlation of the model's uncertainty with it (target >= 0.7), and the
artifact's own held-out one-step error (``fidelity.json``, k = 1). Saved to
benchmarks/results/honest_dreams.md (full reports beside it as honest_dreams-<card>.{md,json,png}).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from worldflux.dream.cards import find_card
from worldflux.dream.make import load_simulator
from worldflux.dream.shifted import shifted_policy_report
from worldflux.files import write_text_atomic

RESULTS = Path(__file__).with_name("results")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--cards", nargs="+", default=["dreamer-walker", "ensemble-walker"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for name in args.cards:
        card = find_card(name)
        sim = load_simulator(name)
        started = time.time()
        report = shifted_policy_report(sim, episodes=args.episodes, seed=args.seed)
        seconds = time.time() - started
        report.save(RESULTS, stem=f"honest_dreams-{name}")
        fidelity = json.loads((card.artifact_dir / "fidelity.json").read_text())
        held_out = fidelity["metrics"]["model"]["1"]
        for p in report.policies:
            real, dream = p.real.summary(), p.dream.summary()
            rows.append(
                f"| {card.id} | {p.name} | {real['length_median']:.0f} | "
                f"{dream['length_median']:.0f} | "
                f"{dream['length_median'] / real['length_median']:.2f} | "
                f"{real['return_mean']:.1f} | {dream['return_mean']:.1f} | "
                f"{p.one_step['obs_nrmse']:.3f} | {p.one_step['spearman']:.2f} | "
                f"{held_out['obs_nrmse']:.3f} | {held_out['uncertainty_spearman']:.2f} |"
            )
        print(f"{card.id}: {seconds:.0f} s")
    table = "\n".join(
        [
            f"Shipped dreams against the real environment: {args.episodes} first episodes per "
            f"policy and world (card defaults, as served), seed {args.seed}; torch "
            f"{torch.__version__}, {time.strftime('%Y-%m-%d')}.",
            "",
            "| env | policy | real length (median) | dream length (median) | dream / real | "
            "real return | dream return | one-step nRMSE from real states | uncertainty "
            "Spearman | held-out one-step nRMSE (data) | held-out Spearman (data) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            *rows,
        ]
    )
    print(table)
    write_text_atomic(RESULTS / "honest_dreams.md", table + "\n")


if __name__ == "__main__":
    main()
