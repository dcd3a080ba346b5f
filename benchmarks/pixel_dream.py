"""Image dream throughput next to the real game: environment steps/s of an image dream vector
env (torch eager and ONNX Runtime) and of the real environment the data came from (ALE), in one
run, interleaved so that all see the same machine load.

    python benchmarks/pixel_dream.py --run runs/token-breakout [--which model|best]
        [--envs 1 16 64] [--repeats 5] [--seconds 1.0] [--name breakout-token]

The real game runs as one env and as a gymnasium ``SyncVectorEnv`` of N envs (what a vectorised
agent steps on one core). Each cell is the median over ``--repeats`` of ``--seconds`` of uniformly
random Discrete actions (autoresets included). Results go to
``benchmarks/results/pixel_dream-<name>.md``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import worldflux  # noqa: F401  (registers the envs)
from worldflux.dream import LearnedSimulator, make_dream_env

RESULTS = Path(__file__).with_name("results")


def steps_per_second(step: Any, n: int, actions: np.ndarray, seconds: float) -> float:
    """Env steps/s of ``step(actions[i])`` (``n`` envs per call) over about ``seconds``."""
    step(actions[0])  # warm-up
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step(actions[count % len(actions)])
        count += 1
    return count * n / (time.perf_counter() - start)


def real_stepper(env_id: str, n: int) -> Any:
    """``step(actions [n])`` of the real game: one env (n = 1) or a SyncVectorEnv."""
    if n == 1:
        env = gym.make(env_id)
        env.reset(seed=0)

        def step_one(actions: np.ndarray) -> None:
            _, _, terminated, truncated, _ = env.step(int(actions[0]))
            if terminated or truncated:
                env.reset()

        return step_one
    vec = gym.vector.SyncVectorEnv([lambda: gym.make(env_id) for _ in range(n)])
    vec.reset(seed=0)
    return lambda actions: vec.step(actions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="a `worldflux train` run of an image model")
    parser.add_argument("--which", default="model", choices=["model", "best"])
    parser.add_argument("--envs", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--name", default=None, help="results file suffix (default: run name)")
    args = parser.parse_args()

    sim = LearnedSimulator.from_run(args.run, which=args.which)
    if sim.source_env is None:
        raise SystemExit(f"{args.run}: its dataset names no real environment to compare with.")
    n_actions = int(sim.action_space.n)  # type: ignore[attr-defined]
    started = time.perf_counter()
    sim.onnx_graphs()  # export once, outside the timings
    export_s = time.perf_counter() - started
    rows = []
    for n in args.envs:
        actions = np.random.default_rng(0).integers(0, n_actions, (64, n))
        steppers: dict[str, Any] = {"real ALE": real_stepper(sim.source_env, n)}
        for backend in ("torch", "onnx"):
            env = make_dream_env(sim, num_envs=n, backend=backend)
            env.reset(seed=0)
            steppers[f"dream {backend}"] = env.step  # a vector env, also of one env
        samples: dict[str, list[float]] = {name: [] for name in steppers}
        for _ in range(args.repeats):
            for name, step in steppers.items():
                samples[name].append(steps_per_second(step, n, actions, args.seconds))
        med = {name: statistics.median(v) for name, v in samples.items()}
        rows.append((n, med))
        print(n, {k: round(v) for k, v in med.items()}, flush=True)

    model = sim.torch_model()
    lines = [
        f"# Image dream steps/s next to the real game ({Path(args.run).name})",
        "",
        f"{platform.machine()}, {torch.get_num_threads()} torch threads; model "
        f"`{model.model_type}` ({model.num_parameters():,} parameters), frames "
        f"{tuple(model.config.obs_shape)}; real env `{sim.source_env}`. Medians of "
        f"{args.repeats} runs of {args.seconds} s, interleaved; random actions, autoresets "
        f"included. ONNX export took {export_s:.0f} s.",
        "",
        "| envs | real ALE | dream torch | dream onnx | torch / real | onnx / real |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for n, med in rows:
        real = med["real ALE"]
        lines.append(
            f"| {n} | {real:,.0f} | {med['dream torch']:,.0f} | {med['dream onnx']:,.0f} | "
            f"{med['dream torch'] / real:.2f} | {med['dream onnx'] / real:.2f} |"
        )
    name = args.name or Path(args.run).name
    out = RESULTS / f"pixel_dream-{name}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
