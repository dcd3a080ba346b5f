"""Torch thread settings on a busy machine: one ``dreamerv3:tiny`` training step (batch 16 x 64,
17-dim observations) with 1 or 2 intra-op threads and OpenMP's default or passive wait policy,
on an idle machine and beside CPU-bound processes (as when several jobs share 2 cores).

    python benchmarks/threads.py [--steps 40] [--repeats 3] [--hogs 1] [--note TEXT]

Each setting runs in a fresh process (OpenMP reads ``OMP_WAIT_POLICY`` when torch loads), the
settings interleaved so all see the same machine. With ``OMP_WAIT_POLICY`` unset, WorldFlux sets
it to ``PASSIVE`` before torch loads (see ``worldflux/_threads.py``); the ``ACTIVE`` rows show what
spinning threads cost. Prints a table of median step times and saves it to
``benchmarks/results/threads.md``. Each worker sets its thread count explicitly
(``OMP_NUM_THREADS`` and ``torch.set_num_threads``). What training does with these numbers by
default (``threads="auto"``: half the CPUs unless ``OMP_NUM_THREADS`` is set) is in
``docs/threads.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from worldflux.files import write_text_atomic

RESULTS = Path(__file__).with_name("results") / "threads.md"
SETTINGS = [  # (label, torch threads, OMP_WAIT_POLICY or None: the library default)
    ("2 threads, OMP_WAIT_POLICY=ACTIVE", 2, "ACTIVE"),
    ("2 threads, WorldFlux default (PASSIVE)", 2, None),
    ("1 thread", 1, None),
]
HOG = "import time\nend = time.time() + 3600\nwhile time.time() < end:\n    pass\n"


def worker(steps: int) -> None:
    """One setting: print the median seconds of a training step (after one warm-up step)."""
    import numpy as np

    sys.path.insert(0, str(Path(__file__).parent))
    from trainer_throughput import random_walk_store

    import worldflux as wf
    from worldflux.data import MinariBatchProvider
    from worldflux.training import Trainer, TrainerConfig

    data = MinariBatchProvider.from_store(random_walk_store(17, 6), validation_fraction=0.1)
    model = wf.create_world_model("dreamerv3:tiny", obs_shape=(17,), action_dim=6)
    cfg = TrainerConfig(
        steps=steps + 2, batch_size=16, seq_len=64, eval_every=0, checkpoint_every=0,
        log_every=steps + 2,
    )  # fmt: skip
    trainer = Trainer(model, data, cfg, progress=False)
    trainer.train_step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        trainer.train_step()
        times.append(time.perf_counter() - start)
    print(json.dumps({"median_s": float(np.median(times))}))


def measure(threads: int, policy: str | None, steps: int) -> float:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["WORLDFLUX_BENCH_THREADS"] = str(threads)
    env["OMP_NUM_THREADS"] = str(threads)
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    out = subprocess.run(
        [sys.executable, __file__, "--worker", "--steps", str(steps)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return float(json.loads(out.stdout.strip().splitlines()[-1])["median_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hogs", type=int, default=1, help="CPU-bound processes for 'busy'")
    parser.add_argument("--note", default="", help="a line about the machine's load, saved")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        import torch

        torch.set_num_threads(int(os.environ["WORLDFLUX_BENCH_THREADS"]))
        worker(args.steps)
        return
    results: dict[tuple[str, str], list[float]] = {}
    for load in ("idle", "busy"):
        hogs = []
        if load == "busy":
            hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(args.hogs)]
        try:
            for _ in range(args.repeats):
                for label, threads, policy in SETTINGS:
                    seconds = measure(threads, policy, args.steps)
                    results.setdefault((label, load), []).append(seconds)
                    print(f"{load:>4} | {label}: {seconds * 1000:.1f} ms", flush=True)
        finally:
            for hog in hogs:
                hog.kill()
    lines = [
        f"| setting | idle (ms/step) | busy, {args.hogs} CPU-bound process(es) (ms/step) "
        "| busy / idle |",
        "|---|---:|---:|---:|",
    ]
    for label, _, _ in SETTINGS:
        idle = statistics.median(results[(label, "idle")])
        busy = statistics.median(results[(label, "busy")])
        lines.append(f"| {label} | {idle * 1000:.1f} | {busy * 1000:.1f} | {busy / idle:.1f} |")
    import torch

    note = (
        f"`dreamerv3:tiny` training step, batch 16 x 64, 17-dim observations; medians of "
        f"{args.repeats} processes x {args.steps} steps; {os.cpu_count()} CPUs; torch "
        f"{torch.__version__}; {time.strftime('%Y-%m-%d')}. {args.note}\n\n"
    )
    table = "\n".join(lines)
    print(table)
    RESULTS.parent.mkdir(exist_ok=True)
    write_text_atomic(RESULTS, note + table + "\n")


if __name__ == "__main__":
    main()
