"""Offline policy selection over finished agent runs: how well each dream estimate ranks the
final policies of several runs (seeds, settings) as the real environment does.

    python benchmarks/policy_selection.py --name NAME RUN [RUN ...] [--episodes 10]
    python benchmarks/policy_selection.py --name NAME --checkpoints RUN [RUN ...]

Every RUN is an agent run folder (``agent.json`` + ``model.zip``, e.g. the runs of
``mopo_curve.py``) of one dataset. Each final policy is scored in its run's dream from the
dataset's episode starts up to the real time limit: the raw return, and the pessimistic
estimates of :func:`worldflux.rl.train.pessimistic_settings` (``penalised``, ``halted``); the
real return is the one the run measured at the end. With ``--checkpoints`` nothing is scored
anew: every evaluation the runs recorded during training (their checkpoints and the final one,
with the pessimistic estimates where the runs recorded them) is ranked together. Prints and saves
benchmarks/results/policy_selection-NAME.md with the Spearman correlation of each estimate with
the real return.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from worldflux.data.collect import SB3Policy
from worldflux.dream.make import load_simulator, make_dream_env
from worldflux.eval.fidelity import spearman
from worldflux.files import write_text_atomic
from worldflux.rl.evaluate import first_episodes
from worldflux.rl.train import FINAL_SEED, pessimistic_settings, prediction_settings

RESULTS = Path(__file__).with_name("results")


def score_run(run: Path, episodes: int) -> dict[str, Any]:
    summary = json.loads((run / "agent.json").read_text())
    model_run, real_env = summary["recipe"]["env"], summary["real_env"]
    sim = load_simulator(model_run)
    probe = gym.make(real_env)
    policy = SB3Policy.from_file(run / "model.zip", probe)
    probe.close()
    raw = prediction_settings(real_env)
    estimates = {"raw": raw, **pessimistic_settings(sim, raw)}
    row: dict[str, Any] = {"run": run.name, "model": model_run,
                           "real": summary["final"]["real"]["mean"]}  # fmt: skip
    for name, settings in estimates.items():
        venv = make_dream_env(sim, num_envs=episodes, **settings)
        try:
            row[name] = first_episodes(venv, policy, FINAL_SEED).mean
        finally:
            venv.close()
    return row


def recorded_rows(run: Path) -> list[dict[str, Any]]:
    """Every evaluation ``run`` recorded: dream (raw and pessimistic) and real mean returns."""
    summary = json.loads((run / "agent.json").read_text())
    return [
        {"run": f"{run.name} @ {e['step']:,}", "model": summary["recipe"]["env"],
         "real": e["real"]["mean"], "raw": e["dream"]["mean"], **e.get("dream_pessimistic", {})}
        for e in summary["evaluations"]
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--name", required=True)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--checkpoints", action="store_true",
                        help="rank the evaluations the runs recorded (nothing is scored anew)")  # fmt: skip
    args = parser.parse_args()
    rows = []
    for run in args.runs:
        if args.checkpoints:
            rows.extend(recorded_rows(run))
        else:
            rows.append(score_run(run, args.episodes))
            print(rows[-1], flush=True)
    # the estimates every row has (runs without pessimistic estimates leave only the raw one)
    names = [k for k in rows[0] if k not in ("run", "model", "real") and all(k in r for r in rows)]
    real = np.array([r["real"] for r in rows])
    rho = {k: spearman(np.array([r[k] for r in rows]), real) for k in names}
    lines = [
        f"# Offline policy selection: {args.name}",
        "",
        (
            f"{len(rows)} evaluations recorded during training (checkpoints and final policies)"
            if args.checkpoints
            else f"{len(rows)} final policies; dream returns over {args.episodes} episodes"
        )
        + " from the dataset's episode starts, real returns as each run measured them.",
        "",
        "Spearman with the real return: " + ", ".join(f"{k} {v:.2f}" for k, v in rho.items()),
        "",
        "| run | real return | " + " | ".join(f"dream {k}" for k in names) + " |",
        "|---|---:|" + "---:|" * len(names),
        *(
            f"| {r['run']} | {r['real']:.1f} | " + " | ".join(f"{r[k]:.1f}" for k in names) + " |"
            for r in sorted(rows, key=lambda r: -r["real"])
        ),
    ]
    table = "\n".join(lines) + "\n"
    RESULTS.mkdir(exist_ok=True)
    write_text_atomic(RESULTS / f"policy_selection-{args.name}.md", table)
    print(table)


if __name__ == "__main__":
    main()
