"""Offline RL results: dream-trained agents (PPO behaviour-regularised and pure; MOPO-style SAC and
TD3 on a buffer mixing dream branches with the dataset) vs behaviour cloning and TD3+BC on the
project's datasets, 3 seeds each, scored on the real environments (see `worldflux offline`).

    python benchmarks/offline_rl.py [--datasets worldflux/walker2d/medium-v0 ...]
        [--methods dream mopo-sac bc td3bc] [--seeds 0 1 2] [--model-run DATASET=RUN ...]
        [--gradient-steps 100000] [--agent-steps N] [--checkpoints 4] [--threads 1]

A dataset without ``--model-run`` trains its ensemble first (30k steps, about 7 minutes here).
Each dataset's ``results.{json,md}`` goes to ``runs/offline-<dataset>/``; the combined table
(mean ± std over seeds of the real return and the normalised score) to
``benchmarks/results/offline_rl.md``. Hours of CPU for the full set: not part of the tests.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from worldflux.files import write_text_atomic
from worldflux.rl.offline import METHODS, offline_run

RESULTS = Path(__file__).with_name("results") / "offline_rl.md"
DATASETS = (
    "worldflux/walker2d/medium-v0",
    "worldflux/walker2d/medium-replay-v0",
    "worldflux/hopper/medium-v0",
)


def use_threads(count: int) -> None:
    """``count`` torch intra-op threads here and in processes started from here
    (``OMP_NUM_THREADS``, which training with ``threads="auto"`` keeps too)."""
    import torch

    os.environ["OMP_NUM_THREADS"] = str(count)
    torch.set_num_threads(count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--model-run", nargs="*", default=[], help="DATASET=RUN_OR_ARTIFACT")
    parser.add_argument("--gradient-steps", type=int, default=100_000)
    parser.add_argument("--agent-steps", type=int, default=300_000)
    parser.add_argument("--checkpoints", type=int, default=4)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (saved with the table)"
    )
    args = parser.parse_args()
    use_threads(args.threads)
    reuse = dict(item.split("=", 1) for item in args.model_run)
    notes, rows = [], []
    for dataset in args.datasets:
        results = offline_run(
            dataset,
            Path("runs") / f"offline-{dataset.replace('/', '-')}",
            methods=tuple(args.methods),
            seeds=tuple(args.seeds),
            model_run=reuse.get(dataset),
            agent_steps=args.agent_steps,
            gradient_steps=args.gradient_steps,
            checkpoints=args.checkpoints,
        )
        ref = results["reference"]
        notes.append(
            f"- {dataset}: reference scores ({ref['source']}) min {ref['min']:.1f} / max "
            f"{ref['max']:.1f}; random policy {results['random_return']:.1f}; dataset mean "
            f"episode return {results['dataset_mean_return']:.1f}; world model "
            f"{results['settings']['model_run'] or 'trained for this run'}"
        )
        for method, s in results["summary"].items():
            per_seed = ", ".join(
                f"{r['real_return']:.0f}" for r in results["runs"] if r["method"] == method
            )
            rows.append(
                f"| {dataset} | {method} | {s['return_mean']:.1f} ± {s['return_std']:.1f} "
                f"| {s['normalised_mean']:.1f} ± {s['normalised_std']:.1f} | {per_seed} |"
            )
            print(rows[-1], flush=True)
        if "selection" in results:
            selection = results["selection"]
            notes.append(
                f"- {dataset}: offline policy selection over {len(selection['policies'])} "
                f"dream-agent checkpoints and seeds: Spearman {selection['spearman']} "
                "(dream-predicted vs real return)"
            )
    lines = [
        "# Offline RL: real-environment returns and normalised scores (mean ± std over seeds)",
        "",
        f"Seeds {args.seeds}; PPO {args.agent_steps:,} steps in the pessimistic dream; "
        f"`mopo-*`, BC and TD3+BC {args.gradient_steps:,} updates; {args.threads} torch "
        "threads. `dream`: PPO from a "
        "behaviour-cloned start, regularised towards the dataset's actions; `dream-pure`: PPO "
        "from the dream alone; `mopo-sac`/`mopo-td3`: 5-step penalised branches from dataset "
        "states, 5% of every batch from the dataset.",
        "",
        *notes,
        "",
        "| dataset | method | real return | normalised score | per seed |",
        "|---|---|---:|---:|---|",
        *rows,
    ]
    RESULTS.parent.mkdir(exist_ok=True)
    write_text_atomic(RESULTS, "\n".join(lines) + "\n")
    print(f"saved {RESULTS}")


if __name__ == "__main__":
    main()
