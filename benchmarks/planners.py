"""Planning throughput: actions planned per second by CEM and MPPI, batched over envs versus a
naive loop that plans one env at a time.

    python benchmarks/planners.py [--repeats 3] [--threads 1] [--iterations 3]
                                  [--model ensemble:small] [--envs 1 16 256]

Model (``--model``): ``ensemble:small`` (7 members of 4 x 200, 5 elites) by default, with random
weights on Walker2d-shaped inputs (17-dim observations, 6-dim actions); throughput does not depend
on the weights. Planners: horizon 5, 512 samples, 64 elites, ``--iterations`` rounds,
deterministic transitions; a model with a policy prior and a value (``tdmpc2:*``) plans as
TD-MPC2 does instead (horizon 3, 512 samples plus 24 prior sequences, 64 elites, the value
bootstrap; MPPI only, as CEM does not take them). For each ``--envs`` count, one measurement is
one ``plan`` call for all envs (batched: ``B x 512`` candidates per model call) and, interleaved
with it so both see the same machine load, one pass of the naive loop (a planner with the same
settings per env, each called with B=1). Prints a table of medians and saves it to
benchmarks/results/planners.md (other models: planners-FAMILY-PRESET.md).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import worldflux as wf
from worldflux.files import write_text_atomic
from worldflux.planners import CEMPlanner, MPPIPlanner, SamplingPlanner, tdmpc2_planner
from worldflux.planners.prior import PriorModel

RESULTS = Path(__file__).with_name("results") / "planners.md"
ENVS = (1, 16, 256)
OBS_DIM, ACTION_DIM = 17, 6
HORIZON, SAMPLES, ELITES = 5, 512, 64


def make_planner(kind: str, model: wf.WorldModel, iterations: int, seed: int) -> SamplingPlanner:
    if isinstance(model, PriorModel):
        return tdmpc2_planner(model, iterations=iterations, seed=seed)
    cls = CEMPlanner if kind == "cem" else MPPIPlanner
    return cls(
        model,
        horizon=HORIZON,
        num_samples=SAMPLES,
        num_elites=ELITES,
        iterations=iterations,
        seed=seed,
    )


def batched_time(planner: SamplingPlanner, state: wf.State) -> float:
    """Seconds of one ``plan`` call for every env of ``state``."""
    start = time.perf_counter()
    planner.plan(state)
    return time.perf_counter() - start


def naive_time(planners: list[SamplingPlanner], states: list[wf.State]) -> float:
    """Seconds of planning each env on its own (B=1), one after another."""
    start = time.perf_counter()
    for planner, state in zip(planners, states, strict=True):
        planner.plan(state)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="measurements per cell (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--iterations", type=int, default=3, help="planning rounds per call")
    parser.add_argument("--model", default="ensemble:small", help="family:preset (random weights)")
    parser.add_argument("--envs", type=int, nargs="+", default=list(ENVS), help="env counts")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = wf.create_world_model(args.model, obs_shape=(OBS_DIM,), action_dim=ACTION_DIM)
    model.eval()
    with_prior = isinstance(model, PriorModel)
    kinds = ("mppi",) if with_prior else ("cem", "mppi")
    lines = [
        "| planner | envs | batched ms / call | batched actions/s | naive loop ms | "
        "naive actions/s | batched / naive |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind in kinds:
        for envs in args.envs:
            obs = torch.randn(envs, OBS_DIM, generator=torch.Generator().manual_seed(envs))
            state = model.encode(obs)
            singles = [model.encode(obs[i : i + 1]) for i in range(envs)]
            batched = make_planner(kind, model, args.iterations, 0)
            naive = [make_planner(kind, model, args.iterations, i) for i in range(envs)]
            naive_time([make_planner(kind, model, args.iterations, 0)], singles[:1])  # warm-up
            a, b = [], []
            for _ in range(args.repeats):
                a.append(batched_time(batched, state))
                b.append(naive_time(naive, singles))
            ta, tb = statistics.median(a), statistics.median(b)
            lines.append(
                f"| {kind.upper()} | {envs} | {ta * 1e3:.1f} | {envs / ta:.1f} | "
                f"{tb * 1e3:.1f} | {envs / tb:.1f} | {tb / ta:.2f} |"
            )
            print(lines[-1], flush=True)
    table = "\n".join(lines)
    print(table)
    RESULTS.parent.mkdir(exist_ok=True)
    settings = (
        f"TD-MPC2's planner (horizon 3, {SAMPLES} samples + 24 prior sequences, {ELITES} elites, "
        "value bootstrap)"
        if with_prior
        else f"horizon {HORIZON}, {SAMPLES} samples, {ELITES} elites"
    )
    note = (
        f"Planned actions per second, `{args.model}` ({model.num_parameters() / 1e6:.2f}M "
        f"parameters, random weights; 17-dim obs, 6-dim actions), {settings}, "
        f"{args.iterations} rounds, deterministic transitions, torch CPU. Batched: one `plan` "
        f"call for all envs; naive: one planner per env called with B=1 in a Python loop. "
        f"Medians of {args.repeats} interleaved measurements; torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s); {time.strftime('%Y-%m-%d')}.\n\n"
    )
    default = args.model == "ensemble:small"
    out = RESULTS if default else RESULTS.with_name(f"planners-{args.model.replace(':', '-')}.md")
    write_text_atomic(out, note + table + "\n")


if __name__ == "__main__":
    main()
