"""Planning throughput: actions planned per second by CEM and MPPI, batched over envs (torch and
ONNX Runtime) versus loops that plan one env at a time (WorldFlux's planner with B=1, and
mbrl-lib's PETS agent, as mbrl-lib plans).

    python benchmarks/planners.py [--repeats 3] [--threads 1] [--iterations 3]
                                  [--model ensemble:small] [--envs 1 16 256]
                                  [--mbrl-path runs/mbrl-side]

Model (``--model``): ``ensemble:small`` (7 members of 4 x 200, 5 elites) by default, with random
weights on Walker2d-shaped inputs (17-dim observations, 6-dim actions); throughput does not depend
on the weights. Planners: horizon 5, 512 samples, 64 elites, ``--iterations`` rounds, sampled
transitions (each candidate through one elite drawn at random, PETS's TS-1). Contestants, each
planning every env once per measurement, interleaved so that all see the same machine load:

* ``torch batched``: one ``plan`` call for all envs (``B x 512`` candidates per model call), the
  partitioned ensemble (each elite runs only on the rows that drew it);
* ``torch per-env loop``: the same planner settings, one planner per env called with B=1;
* ``mbrl-lib per-env loop`` (with ``--mbrl-path``, see ``mbrl_peer.py``): mbrl-lib 0.2.0's
  ``TrajectoryOptimizerAgent.act`` per env over a parameter-matched ensemble (one particle per
  candidate, TS-1);
* ``torch batched, every elite`` and ``ORT batched, every elite``: the model as exported to ONNX
  (every elite on every row, then the sampled one kept: 5x the work of TS-1 per row; the
  partitioned forward does not export), planned on torch and on ONNX Runtime's CPU session with
  the same threads.

A model with a policy prior and a value (``tdmpc2:*``) plans as TD-MPC2 does instead (horizon 3,
512 samples plus 24 prior sequences, 64 elites, the value bootstrap, deterministic transitions;
MPPI only), torch batched versus the per-env loop (its value and prior are not exported). Prints a
table of medians and saves it to benchmarks/results/planners.md (other models:
planners-FAMILY-PRESET.md).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import worldflux as wf
from worldflux.files import write_text_atomic
from worldflux.planners import CEMPlanner, MPPIPlanner, SamplingPlanner, tdmpc2_planner
from worldflux.planners.prior import PriorModel

RESULTS = Path(__file__).with_name("results") / "planners.md"
ENVS = (1, 16, 256)
OBS_DIM, ACTION_DIM = 17, 6
HORIZON, SAMPLES, ELITES = 5, 512, 64


def make_planner(kind: str, model: object, iterations: int, seed: int) -> SamplingPlanner:
    if isinstance(model, PriorModel):
        assert isinstance(model, wf.WorldModel)
        return tdmpc2_planner(model, iterations=iterations, seed=seed)
    cls = CEMPlanner if kind == "cem" else MPPIPlanner
    return cls(
        model,  # type: ignore[arg-type]
        horizon=HORIZON,
        num_samples=SAMPLES,
        num_elites=ELITES,
        iterations=iterations,
        sample_transitions=True,
        seed=seed,
    )


def batched(planner: SamplingPlanner, state: wf.State) -> Callable[[], None]:
    """One ``plan`` call for every env of ``state``."""

    def run() -> None:
        planner.plan(state)

    return run


def per_env(planners: list[SamplingPlanner], states: list[wf.State]) -> Callable[[], None]:
    """Each env planned on its own (B=1), one after another."""

    def run() -> None:
        for planner, state in zip(planners, states, strict=True):
            planner.plan(state)

    return run


def mbrl_peer(
    args: argparse.Namespace, kind: str, envs: int
) -> tuple[Callable[[np.ndarray], None], int]:
    """mbrl-lib's agents for ``envs`` envs with this benchmark's settings (``mbrl_peer.py``)."""
    from mbrl_peer import mbrl_agents

    return mbrl_agents(
        args.mbrl_path,
        kind=kind,
        obs_dim=OBS_DIM,
        action_dim=ACTION_DIM,
        envs=envs,
        horizon=HORIZON,
        samples=SAMPLES,
        elites=ELITES,
        iterations=args.iterations,
    )


def contestants(
    kind: str, envs: int, args: argparse.Namespace, models: dict[str, object]
) -> dict[str, Callable[[], None]]:
    """The named planning passes (each plans every env once) for ``envs`` envs."""
    obs = torch.randn(envs, OBS_DIM, generator=torch.Generator().manual_seed(envs))
    main = models["main"]
    assert isinstance(main, wf.WorldModel)
    out = {
        "torch batched": batched(make_planner(kind, main, args.iterations, 0), main.encode(obs)),
        "torch per-env loop": per_env(
            [make_planner(kind, main, args.iterations, i) for i in range(envs)],
            [main.encode(obs[i : i + 1]) for i in range(envs)],
        ),
    }
    if "mbrl" in models:
        plan_all, _ = mbrl_peer(args, kind, envs)
        array = obs.numpy()
        out["mbrl-lib per-env loop"] = lambda: plan_all(array)
    if "full" in models:
        from worldflux.planners.onnx import OnnxStepper

        full, stepper = models["full"], models["onnx"]
        assert isinstance(full, wf.WorldModel) and isinstance(stepper, OnnxStepper)
        out["torch batched, every elite"] = batched(
            make_planner(kind, full, args.iterations, 0), full.encode(obs)
        )
        out["ORT batched, every elite"] = batched(
            make_planner(kind, stepper, args.iterations, 0), stepper.encode(obs.numpy())
        )
    return out


def build_models(args: argparse.Namespace) -> dict[str, object]:
    """``main`` (the model planned with), and for an ensemble ``full`` (its exportable form),
    ``onnx`` (that model on ONNX Runtime) and ``mbrl`` (mbrl-lib's parameter count)."""
    torch.manual_seed(0)
    dims = {"obs_shape": (OBS_DIM,), "action_dim": ACTION_DIM}
    if not args.model.startswith("ensemble"):
        return {"main": wf.create_world_model(args.model, **dims).eval()}
    from worldflux.dream.onnx_backend import OnnxBackend
    from worldflux.export.onnx import export_graphs
    from worldflux.planners.onnx import OnnxStepper

    main = wf.create_world_model(args.model, partitioned=True, **dims).eval()
    full = wf.create_world_model(args.model, **dims).eval()
    full.load_state_dict(main.state_dict())
    example = np.random.default_rng(0).normal(size=(4, OBS_DIM)).astype(np.float32)
    backend = OnnxBackend(export_graphs(full, example), threads=args.threads)
    models: dict[str, object] = {"main": main, "full": full, "onnx": OnnxStepper(backend)}
    if args.mbrl_path:
        models["mbrl"] = mbrl_peer(args, "mppi", 1)[1]
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="measurements per cell (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch and ORT CPU threads")
    parser.add_argument("--iterations", type=int, default=3, help="planning rounds per call")
    parser.add_argument("--model", default="ensemble:small", help="family:preset (random weights)")
    parser.add_argument("--envs", type=int, nargs="+", default=list(ENVS), help="env counts")
    parser.add_argument(
        "--mbrl-path", default=None, help="side folder with mbrl-lib 0.2.0 (see mbrl_peer.py)"
    )
    args = parser.parse_args()
    if args.mbrl_path and not args.model.startswith("ensemble"):
        parser.error(
            f"--mbrl-path: expected an ensemble --model (mbrl-lib's peer is an ensemble), got "
            f"{args.model!r}."
        )
    torch.set_num_threads(args.threads)
    models = build_models(args)
    main_model = models["main"]
    assert isinstance(main_model, wf.WorldModel)
    with_prior = isinstance(main_model, PriorModel)
    kinds = ("mppi",) if with_prior else ("cem", "mppi")
    lines = [
        "| planner | envs | contestant | ms / call | actions/s | x per-env loop |",
        "|---|---|---|---|---|---|",
    ]
    for kind in kinds:
        for envs in args.envs:
            runs = contestants(kind, envs, args, models)
            for run in runs.values():  # warm-up
                run()
            times: dict[str, list[float]] = {name: [] for name in runs}
            for _ in range(args.repeats):
                for name, run in runs.items():
                    start = time.perf_counter()
                    run()
                    times[name].append(time.perf_counter() - start)
            medians = {name: statistics.median(values) for name, values in times.items()}
            loop = medians["torch per-env loop"]
            for name, seconds in medians.items():
                lines.append(
                    f"| {kind.upper()} | {envs} | {name} | {seconds * 1e3:.1f} | "
                    f"{envs / seconds:.1f} | {loop / seconds:.2f} |"
                )
                print(lines[-1], flush=True)
    table = "\n".join(lines)
    print(table)
    settings = (
        f"TD-MPC2's planner (horizon 3, {SAMPLES} samples + 24 prior sequences, {ELITES} elites, "
        "value bootstrap, deterministic transitions)"
        if with_prior
        else f"horizon {HORIZON}, {SAMPLES} samples, {ELITES} elites, sampled transitions (TS-1)"
    )
    peer = f"; mbrl-lib 0.2.0's model {models['mbrl']:,} parameters" if "mbrl" in models else ""
    note = (
        f"Planned actions per second, `{args.model}` ({main_model.num_parameters():,} "
        f"parameters{peer}; random weights, 17-dim obs, 6-dim actions), {settings}, "
        f"{args.iterations} rounds, CPU. Contestants: see the docstring of "
        f"benchmarks/planners.py. Medians of {args.repeats} interleaved measurements after a "
        f"warm-up; torch {torch.__version__}, {torch.get_num_threads()} thread(s); "
        f"{time.strftime('%Y-%m-%d')}.\n\n"
    )
    default = args.model == "ensemble:small"
    out = RESULTS if default else RESULTS.with_name(f"planners-{args.model.replace(':', '-')}.md")
    write_text_atomic(out, note + table + "\n")


if __name__ == "__main__":
    main()
