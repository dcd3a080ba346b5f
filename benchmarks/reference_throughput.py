"""DreamerV3 training throughput against the reference WorldFlux project, side by side.

    python benchmarks/reference_throughput.py --reference-python REFENV/bin/python
        [--threads 2] [--repeats 3] [--steps 10] [--sizes 50k 500k 2m 5m 20m]

The reference (github.com/worldflux/WorldFlux, measured at commit eefc5a8) lives in its own
environment, because both projects' packages are called ``worldflux``::

    git clone https://github.com/worldflux/WorldFlux ref && git -C ref checkout eefc5a8
    python3.11 -m venv refenv && refenv/bin/pip install torch==2.13.0
    refenv/bin/pip install -e ref

For each size the reference's DreamerV3 (vector observations: 17-dim, 6-dim actions; its
widths in :data:`SIZES`) is timed by ``reference_step.py`` with its own ``Trainer._train_step``;
this project's ``dreamerv3`` (the same latent groups and classes, deter = hidden width chosen
to match the reference's parameter count) by its ``Trainer.train_step``, in fp32 and with bf16
autocast. Batches of 16 x 64 steps, random data; every run is a fresh process and the three
runs of a repeat follow each other, so all see the same machine load. Medians over the repeats
go to benchmarks/results/reference_throughput.md.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "reference_throughput.md"
#: reference widths (deter = hidden) and latents (groups x classes) per target size
SIZES = {
    "50k": (40, 8, 8),
    "500k": (128, 16, 16),
    "2m": (192, 32, 32),
    "5m": (384, 32, 32),
    "20m": (992, 32, 32),
}


def ours_params(width: int, groups: int, classes: int) -> int:
    import worldflux as wf

    model = wf.create_world_model(
        "dreamerv3", obs_shape=(17,), action_dim=6, deter=width, hidden=width, layers=2,
        groups=groups, classes=classes,
    )  # fmt: skip
    return model.num_parameters()


def matched_width(target: int, groups: int, classes: int) -> int:
    """The deter = hidden width whose parameter count is closest to ``target``."""
    low, high = 8, 4096
    while high - low > 1:  # parameter counts grow with the width
        mid = (low + high) // 2
        if ours_params(mid, groups, classes) < target:
            low = mid
        else:
            high = mid
    return min(low, high, key=lambda w: abs(ours_params(w, groups, classes) - target))


def ours_step(width: int, groups: int, classes: int, bf16: bool, steps: int, threads: int) -> None:
    """One timed run of this project's Trainer (in a fresh process; prints ``samples/s=``)."""
    import torch

    sys.path.insert(0, str(HERE))
    from trainer_throughput import random_walk_store

    import worldflux as wf
    from worldflux.data import MinariBatchProvider
    from worldflux.training import Trainer, TrainerConfig

    torch.manual_seed(0)
    data = MinariBatchProvider.from_store(random_walk_store(17, 6), validation_fraction=0.1)
    model = wf.create_world_model(
        "dreamerv3", obs_shape=(17,), action_dim=6, deter=width, hidden=width, layers=2,
        groups=groups, classes=classes,
    )  # fmt: skip
    config = TrainerConfig(
        steps=steps + 2, batch_size=16, seq_len=64, bf16=bf16, eval_every=0,
        checkpoint_every=0, log_every=steps + 2, threads=threads,
    )  # fmt: skip
    trainer = Trainer(model, data, config, progress=False)
    trainer.apply_threads()
    for _ in range(2):
        trainer.train_step()  # warm-up, as the reference's run
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    print(f"samples/s={16 * 64 * steps / (time.perf_counter() - start):.1f}", flush=True)


def timed(command: list[str], threads: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    match = re.search(r"samples/s=([\d.]+)", out.stdout)
    if out.returncode != 0 or match is None:
        raise SystemExit(f"{' '.join(command)} failed:\n{out.stdout}\n{out.stderr}")
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-python", help="the reference environment's python")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--ours", nargs=4, type=int, metavar=("WIDTH", "GROUPS", "CLASSES", "BF16"),
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args()
    if args.ours:
        width, groups, classes, bf16 = args.ours
        ours_step(width, groups, classes, bool(bf16), args.steps, args.threads)
        return
    if not args.reference_python:
        parser.error("give --reference-python (see the module docstring for the set-up)")
    step = [args.reference_python, str(HERE / "reference_step.py"), "--threads", str(args.threads)]
    lines = [
        "| size | reference params | ours params | reference samples/s | ours fp32 | ours bf16 "
        "| fp32 / reference | bf16 / reference |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in args.sizes:
        ref_width, groups, classes = SIZES[size]
        ref_flags = ["--deter", str(ref_width), "--hidden", str(ref_width), "--stoch",
                     str(groups), "--classes", str(classes)]  # fmt: skip
        info = subprocess.run([*step, *ref_flags, "--params-only"], capture_output=True,
                              text=True, check=True).stdout  # fmt: skip
        ref_params = int(re.search(r"params: (\d+)", info).group(1))  # type: ignore[union-attr]
        width = matched_width(ref_params, groups, classes)
        params = ours_params(width, groups, classes)
        runs: dict[str, list[float]] = {"reference": [], "fp32": [], "bf16": []}
        for _ in range(args.repeats):
            runs["reference"].append(
                timed([*step, *ref_flags, "--steps", str(args.steps)], args.threads)
            )
            for name, bf16 in (("fp32", 0), ("bf16", 1)):
                ours = [sys.executable, __file__, "--threads", str(args.threads), "--steps",
                        str(args.steps), "--ours", str(width), str(groups), str(classes), str(bf16)]  # fmt: skip
                runs[name].append(timed(ours, args.threads))
        ref, fp32, bf16 = (statistics.median(runs[k]) for k in ("reference", "fp32", "bf16"))
        lines.append(
            f"| {size} | {ref_params:,} | {params:,} (width {width}) | {ref:,.0f} | {fp32:,.0f} "
            f"| {bf16:,.0f} | {fp32 / ref:.2f}x | {bf16 / ref:.2f}x |"
        )
        print(lines[-1], {k: [round(v) for v in vs] for k, vs in runs.items()}, flush=True)
    note = (
        f"DreamerV3 training updates on batches of 16 x 64 steps (17-dim observations, 6-dim "
        f"actions), {args.threads} torch threads, medians of {args.repeats} interleaved runs of "
        f"{args.steps} updates after 2 warm-up updates; reference: github.com/worldflux/WorldFlux "
        f"at eefc5a8 (its DreamerV3 and Trainer, fp32); {time.strftime('%Y-%m-%d')}.\n\n"
    )
    table = note + "\n".join(lines) + "\n"
    print(table)
    RESULTS.parent.mkdir(exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(table)
    tmp.replace(RESULTS)


if __name__ == "__main__":
    main()
