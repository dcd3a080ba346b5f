"""Learning curve of one MOPO-style agent (`worldflux offline`'s `mopo-sac` / `mopo-td3`): the
dream's predicted return and the real return every N gradient updates, with the Spearman
correlation of the two over the checkpoints (offline policy selection).

    python benchmarks/mopo_curve.py --model-run RUN [--dataset-env Walker2d-v5] [--algo sac]
        [--seed 0] [--gradient-steps 100000] [--every 10000] [--episodes 5]
        [--penalty 5.0] [--horizon 5] [--halt p99] [--noise-scale 1.0] [--real-fraction 0.05]
        [--activation relu] [--n-critics 2] [--learning-rate 3e-4] [--bc-steps 0] [--bc-lr 1e-4]
        [--policy-average 0.999] [--threads 1] [--name NAME]
    python benchmarks/mopo_curve.py --from-run runs/.../mopo-sac-s0 --name NAME

The agent goes to ``runs/mopo-curve-NAME/``; the table to
``benchmarks/results/mopo_curve-NAME.md``. ``--from-run`` only writes the table of a finished
agent run. Tens of minutes per 100k updates on 2 CPU cores: not part of the tests.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from worldflux.eval.fidelity import spearman
from worldflux.files import write_text_atomic
from worldflux.rl.activations import ACTIVATIONS
from worldflux.rl.behaviour import BehaviourSettings
from worldflux.rl.offline import BEHAVIOUR, MOPO_HORIZON, MOPO_PENALTY, dream_recipe
from worldflux.rl.replay import ReplaySettings
from worldflux.rl.train import recorded_estimates, train_agent

RESULTS = Path(__file__).with_name("results")


def use_threads(count: int) -> None:
    """``count`` torch intra-op threads here and in processes started from here
    (``OMP_NUM_THREADS``, which training with ``threads="auto"`` keeps too)."""
    import torch

    os.environ["OMP_NUM_THREADS"] = str(count)
    torch.set_num_threads(count)


def curve_table(summary: dict[str, Any], name: str, threads: int | None = None) -> str:
    recipe = summary["recipe"]
    n_envs = recipe["n_envs"]
    rows = summary["evaluations"]
    dream = np.array([r["dream"]["mean"] for r in rows])
    real = np.array([r["real"]["mean"] for r in rows])
    estimates = sorted(recorded_estimates(rows[0])) if rows else []
    lines = [
        f"# MOPO-style {recipe['algorithm'].upper()} learning curve: {name}",
        "",
        f"Dream {recipe['env']}; dream settings {json.dumps(recipe['dream'])}; replay "
        f"{json.dumps(summary['replay'])}; policy_kwargs "
        f"{json.dumps(recipe['hyperparameters'].get('policy_kwargs', {}))}; "
        f"{n_envs} branches per vector step, one gradient step "
        f"per vector step"
        + (
            f", then {recipe['behaviour']['regularise_steps']} behaviour-cloning step(s) on the "
            f"dataset (Adam {recipe['behaviour']['learning_rate']:g})"
            if recipe.get("behaviour", {}).get("regularise_steps")
            else ""
        )
        + (
            f"; scored and saved: the Polyak average of the actor's weights (decay "
            f"{recipe['policy_average']:g} per update)"
            if recipe.get("policy_average")
            else ""
        )
        + f"; seed {recipe['seed']}. Returns: mean over "
        f"{recipe['evaluation']['episodes']} episodes per checkpoint "
        f"({recipe['evaluation']['final_episodes']} at the end), the dream's from the dataset's "
        "episode starts with raw rewards. Training took "
        f"{summary['train_s'] / 60:.0f} min (dream backend {summary['backend']}"
        + ("" if threads is None else f", {threads} torch threads")
        + ").",
        "",
        f"Spearman (dream-predicted vs real return over the checkpoints): raw "
        f"{spearman(dream, real):.2f}"
        + "".join(
            f"; {key} {spearman(np.array([recorded_estimates(r)[key] for r in rows]), real):.2f}"
            for key in estimates
        ),
    ]
    hyper = recipe["hyperparameters"]
    # SB3 updates once per vector step from the first vector step past learning_starts
    idle = -(-int(hyper.get("learning_starts", 100)) // n_envs)
    per_step = int(hyper.get("gradient_steps", 1))

    def updates_at(step: int) -> int:
        return max(0, step // n_envs - idle) * per_step

    if "selection" in summary:  # chosen by the dream alone
        sel, final = summary["selection"], summary["final"]["real"]
        lines += [
            "",
            f"Dream-selected policy (the highest dream return over the checkpoints and the "
            f"final policy; no real return used): {updates_at(sel['step']):,} updates, real "
            f"return {sel['real']['mean']:.1f} ± {sel['real']['std']:.1f} on the final "
            f"episodes, against the final policy's {final['mean']:.1f} ± {final['std']:.1f}.",
        ]
    lines += [
        "",
        "| gradient updates | dream return | "
        + "".join(f"dream {key} | " for key in estimates)
        + "real return |",
        "|---:|---:|" + "---:|" * len(estimates) + "---:|",
    ]
    for r in rows:
        updates = updates_at(r["step"])
        extra = "".join(f"{recorded_estimates(r)[key]:.1f} | " for key in estimates)
        lines.append(f"| {updates:,} | {r['dream']['mean']:.1f} | {extra}{r['real']['mean']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-run", help="the world model's training run or artifact")
    parser.add_argument("--from-run", help="a finished agent run: only write its table")
    parser.add_argument("--dataset-env", default="Walker2d-v5")
    parser.add_argument("--algo", choices=("sac", "td3"), default="sac")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gradient-steps", type=int, default=100_000)
    parser.add_argument("--every", type=int, default=10_000, help="updates between checkpoints")
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--penalty", type=float, default=MOPO_PENALTY)
    parser.add_argument("--halt", default="none", help="none, a number or p50/p90/p95/p99")
    parser.add_argument(
        "--horizon", type=int, default=MOPO_HORIZON, help="dream branch length in steps"
    )
    parser.add_argument(
        "--noise-scale",
        type=float,
        default=1.0,
        help="the dream's sampling noise in training (0: the model's mean transitions)",
    )
    parser.add_argument("--real-fraction", type=float, default=0.05)
    parser.add_argument(
        "--activation",
        choices=sorted(ACTIVATIONS),
        help="the actor's and critic's hidden activation (default: the method's)",
    )
    parser.add_argument(
        "--n-critics", type=int, default=2, help="Q-networks whose minimum is the target"
    )
    parser.add_argument(
        "--learning-rate", type=float, help="the actor's and critic's (default: the method's)"
    )
    parser.add_argument(
        "--bc-steps",
        type=int,
        default=0,
        help="behaviour-cloning steps on the dataset after every update (0: none)",
    )
    parser.add_argument(
        "--bc-lr", type=float, help="Adam learning rate of those steps (default: [behaviour]'s)"
    )
    parser.add_argument(
        "--policy-average",
        type=float,
        default=0.0,
        help="decay of the Polyak-averaged actor that is scored and saved (0: the trained one)",
    )
    parser.add_argument("--name", required=True)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (saved with the table)"
    )
    args = parser.parse_args()
    threads: int | None = None
    if args.from_run:
        summary = json.loads((Path(args.from_run) / "agent.json").read_text())
    else:
        if not args.model_run:
            parser.error("give --model-run (or --from-run)")
        recipe = dream_recipe(
            f"mopo-{args.algo}", args.seed, args.model_run, args.dataset_env, 0,
            args.gradient_steps, args.episodes, BEHAVIOUR,
        )  # fmt: skip
        recipe.dream["penalty"] = args.penalty
        recipe.dream["horizon"] = args.horizon
        halt: float | str | None = None if args.halt == "none" else args.halt
        with contextlib.suppress(ValueError):
            halt = float(args.halt)
        recipe.dream["halt"] = halt
        if args.noise_scale != 1.0:
            recipe.dream["noise_scale"] = args.noise_scale
        recipe.replay = ReplaySettings(real_fraction=args.real_fraction)
        if args.bc_lr is not None and not args.bc_steps:
            parser.error("--bc-lr sets the cloning steps' rate: give --bc-steps too")
        if args.bc_steps:
            rate = {} if args.bc_lr is None else {"learning_rate": args.bc_lr}
            recipe.behaviour = BehaviourSettings(regularise_steps=args.bc_steps, **rate)
        recipe.policy_average = args.policy_average
        if args.activation:
            recipe.hyperparameters["policy_kwargs"]["activation_fn"] = args.activation
        if args.learning_rate is not None:
            recipe.hyperparameters["learning_rate"] = args.learning_rate
        if args.n_critics != 2:
            recipe.hyperparameters["policy_kwargs"]["n_critics"] = args.n_critics
        recipe.evaluation.every = args.every * recipe.n_envs
        use_threads(args.threads)
        threads = args.threads
        summary = train_agent(recipe, Path("runs") / f"mopo-curve-{args.name}", progress=True)
    table = curve_table(summary, args.name, threads)
    RESULTS.mkdir(exist_ok=True)
    write_text_atomic(RESULTS / f"mopo_curve-{args.name}.md", table)
    print(table)


if __name__ == "__main__":
    main()
