"""Averaged policies: the real return of the mean weights of an agent run's last K saved
policies (a checkpoint average, as stochastic weight averaging does) against each of them.

    python benchmarks/weight_averaging.py --name NAME [--episodes 20] RUN [RUN ...] [--last 2 4]

Every RUN is an agent run folder of ``mopo_curve.py`` (``agent.json``, ``model.zip`` and the
``checkpoints/`` of its periodic evaluations). For each K, the floating-point weights of the last
K saved policies (the final ``model.zip`` and the K - 1 checkpoints before it) are averaged, and so
are their observation normalisers' means and variances; every policy is scored on the real
environment from the same seeds (those of ``policy_selection.py``). Prints and saves
``benchmarks/results/weight_averaging-NAME.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from policy_selection import saved_policies  # the script beside this one

from worldflux.data.collect import SB3Policy
from worldflux.data.sb3_policy import load_obs_norm, load_sb3_policy
from worldflux.files import write_text_atomic
from worldflux.rl.evaluate import real_env_episodes
from worldflux.rl.train import FINAL_SEED

RESULTS = Path(__file__).with_name("results")


def averaged(zips: list[Path], env: gym.Env[Any, Any]) -> SB3Policy:
    """One policy whose weights and observation normaliser are the mean of ``zips``'."""
    policies = [load_sb3_policy(z, env) for z in zips]
    states = [p.state_dict() for p in policies]
    mean = {
        name: torch.stack([s[name] for s in states]).mean(0) if value.is_floating_point() else value
        for name, value in states[-1].items()
    }
    policies[-1].load_state_dict(mean)
    norms = [load_obs_norm(z) for z in zips]
    norm = None
    if norms[-1] is not None:
        if any(n is None for n in norms):
            raise SystemExit(f"{zips}: some policies have an observation normaliser, some none")
        norm = {
            **norms[-1],
            "mean": np.mean([n["mean"] for n in norms], axis=0),
            "var": np.mean([n["var"] for n in norms], axis=0),
        }
    return SB3Policy(policies[-1], env.action_space, obs_norm=norm)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--name", required=True)
    parser.add_argument("--last", nargs="+", type=int, default=[2, 4])
    parser.add_argument("--episodes", type=int, default=20)
    args = parser.parse_args()
    window = max(args.last)
    lines = [
        f"# Averaged policies: {args.name}",
        "",
        f"Real returns over {args.episodes} episodes, the same seeds for every policy: each of "
        f"the last {window} saved policies of every run (oldest first, the final policy last), "
        f"and the averages of the last K ({', '.join(map(str, args.last))}).",
        "",
        "| run | each policy | their mean | "
        + " | ".join(f"average of {k}" for k in args.last)
        + " |",
        "|---|---|---:|" + "---:|" * len(args.last),
    ]
    for run in args.runs:
        summary = json.loads((run / "agent.json").read_text())
        env_id = summary["real_env"]
        zips = [path for _, path in saved_policies(run)]  # oldest first, the final last
        if len(zips) < window:
            raise SystemExit(f"{run}: expected at least {window} saved policies, got {len(zips)}")
        env = gym.make(env_id)
        try:
            each = [
                real_env_episodes(
                    env_id, SB3Policy.from_file(z, env), args.episodes, FINAL_SEED
                ).mean
                for z in zips[-window:]
            ]
            mixed = [
                real_env_episodes(env_id, averaged(zips[-k:], env), args.episodes, FINAL_SEED).mean
                for k in args.last
            ]
        finally:
            env.close()
        print(run.name, each, mixed, flush=True)
        lines.append(
            f"| {run.name} | {', '.join(f'{x:.0f}' for x in each)} | {np.mean(each):.0f} | "
            + " | ".join(f"{x:.0f}" for x in mixed)
            + " |"
        )
    table = "\n".join(lines) + "\n"
    RESULTS.mkdir(exist_ok=True)
    write_text_atomic(RESULTS / f"weight_averaging-{args.name}.md", table)
    print(table)


if __name__ == "__main__":
    main()
