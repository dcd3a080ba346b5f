"""Wall time of one `worldflux offline` sweep run one job after another here, and as Ray tasks on
a local Ray instance of 1 and 2 workers, side by side in one run (interleaved, ``--repeats``
rounds; medians reported).

    python benchmarks/sweep_scaling.py [--dataset worldflux/walker2d/medium-v1]
        [--methods bc td3bc] [--seeds 0 1] [--gradient-steps 3000] [--episodes 3] [--repeats 1]

Each Ray time includes starting and stopping the local Ray instance, as a user's command does.
Writes ``benchmarks/results/sweep_scaling.md``. Needs ``pip install "worldflux[ray]"`` and the
dataset (``worldflux collect --recipe walker2d-medium``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from worldflux.files import write_text_atomic
from worldflux.rl.offline import offline_run
from worldflux.sweep import Sweep

RESULTS = Path(__file__).with_name("results")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="worldflux/walker2d/medium-v1")
    parser.add_argument("--methods", nargs="+", default=["bc", "td3bc"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--gradient-steps", type=int, default=3000)
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # the serial jobs too: one thread per job, as on Ray
    launchers = {
        "serial (here, in order)": Sweep(),
        "Ray, 1 worker": Sweep(ray=True, workers=1),
        "Ray, 2 workers": Sweep(ray=True, workers=2),
    }
    times: dict[str, list[float]] = {name: [] for name in launchers}
    returns: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for i, (name, sweep) in enumerate(launchers.items()):
                started = time.perf_counter()
                results = offline_run(
                    args.dataset, Path(tmp) / f"{repeat}-{i}", methods=tuple(args.methods),
                    seeds=tuple(args.seeds), gradient_steps=args.gradient_steps,
                    episodes=args.episodes, sweep=sweep, progress=False,
                )  # fmt: skip
                times[name].append(time.perf_counter() - started)
                returns[name] = [r["real_return"] for r in results["runs"]]
                print(f"{name}: {times[name][-1]:.1f} s, returns {returns[name]}", flush=True)
    jobs = len(args.methods) * len(args.seeds)
    serial = statistics.median(times["serial (here, in order)"])
    lines = [
        "# Sweep scaling: one `worldflux offline` sweep, serial vs Ray workers",
        "",
        f"{args.dataset}, methods {' '.join(args.methods)}, seeds "
        f"{' '.join(map(str, args.seeds))} ({jobs} jobs), {args.gradient_steps:,} updates and "
        f"{args.episodes} real episodes per job, one torch thread per job; {os.cpu_count()} CPUs "
        f"({platform.processor() or platform.machine()}); median of {args.repeats} interleaved "
        "round(s). Ray times include starting and stopping the local instance.",
        "",
        "| launcher | wall s | speed-up vs serial | same returns as serial |",
        "|---|---:|---:|---|",
    ]
    for name, values in times.items():
        wall = statistics.median(values)
        same = returns[name] == returns["serial (here, in order)"]
        lines.append(f"| {name} | {wall:.1f} | {serial / wall:.2f}x | {'yes' if same else 'no'} |")
    table = "\n".join(lines) + "\n"
    RESULTS.mkdir(exist_ok=True)
    write_text_atomic(RESULTS / "sweep_scaling.md", table)
    print(table)


if __name__ == "__main__":
    main()
