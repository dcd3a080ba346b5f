"""Ensemble ``transition`` step time: full (every elite on every row) vs partitioned (each elite
only on the rows that sampled it).

    python benchmarks/ensemble_forward.py [--repeats 7] [--min-time 0.05]

Model: ``ensemble:small`` (7 members of 4 x 200) on Walker2d-shaped inputs (17-dim observations,
6-dim actions), with 5 elites (the default) and with all 7 members as elites. One stochastic
``transition`` with explicit noise under ``torch.no_grad()``, batch 1 to 4096. The two modes are
timed interleaved, on the same weights, so both see the same machine load. Prints a table of
medians and saves it to benchmarks/results/ensemble_forward.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import worldflux as wf
from worldflux.core import sample_noise_torch
from worldflux.files import write_text_atomic

RESULTS = Path(__file__).with_name("results") / "ensemble_forward.md"
BATCHES = (1, 4, 16, 64, 256, 1024, 4096)


def step_time(model: wf.WorldModel, batch: int, iters: int) -> float:
    """Seconds per ``transition`` (mean over ``iters`` calls) at ``batch`` rows."""
    g = torch.Generator().manual_seed(batch)
    state = model.encode(torch.randn(batch, 17, generator=g))
    action = torch.rand(batch, 6, generator=g) * 2 - 1
    noise = sample_noise_torch(model.noise_spec(), (batch,), generator=g)
    with torch.no_grad():
        start = time.perf_counter()
        for _ in range(iters):
            model.transition(state, action, noise=noise)
        return (time.perf_counter() - start) / iters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--min-time", type=float, default=0.05, help="seconds per measurement")
    args = parser.parse_args()
    lines = [
        "| elites / members | batch | full ms | partitioned ms | full / partitioned |",
        "|---|---|---|---|---|",
    ]
    for elites in (5, 7):
        torch.manual_seed(0)
        full = wf.create_world_model("ensemble:small", obs_shape=(17,), action_dim=6, elites=elites)
        part = wf.create_world_model(
            "ensemble:small", obs_shape=(17,), action_dim=6, elites=elites, partitioned=True
        )
        part.load_state_dict(full.state_dict())
        full.eval()
        part.eval()
        for batch in BATCHES:
            probe = max(step_time(full, batch, 3), 1e-6)  # also warms up both paths
            step_time(part, batch, 3)
            iters = max(3, int(args.min_time / probe))
            a, b = [], []
            for _ in range(args.repeats):
                a.append(step_time(full, batch, iters))
                b.append(step_time(part, batch, iters))
            ta, tb = statistics.median(a) * 1e3, statistics.median(b) * 1e3
            lines.append(f"| {elites} / 7 | {batch} | {ta:.3f} | {tb:.3f} | {ta / tb:.2f} |")
            print(lines[-1], flush=True)
    table = "\n".join(lines)
    print(table)
    RESULTS.parent.mkdir(exist_ok=True)
    note = (
        f"`ensemble:small` (7 x 4 x 200, 17-dim obs, 6-dim actions), one stochastic transition "
        f"with explicit noise; medians of {args.repeats} interleaved measurements of at least "
        f"{args.min_time * 1e3:.0f} ms each; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; {time.strftime('%Y-%m-%d')}.\n\n"
    )
    write_text_atomic(RESULTS, note + table + "\n")


if __name__ == "__main__":
    main()
