"""World-model training throughput against the reference WorldFlux project, side by side.

    python benchmarks/reference_throughput.py --reference-python REFENV/bin/python
        [--family dreamerv3|tdmpc2] [--threads 1] [--repeats 3] [--steps 10] [--sizes ...]

The reference (github.com/worldflux/WorldFlux, measured at commit eefc5a8) lives in its own
environment, because both projects' packages are called ``worldflux``::

    git clone https://github.com/worldflux/WorldFlux ref && git -C ref checkout eefc5a8
    python3.11 -m venv refenv && refenv/bin/pip install torch==2.13.0
    refenv/bin/pip install -e ref

For each size the reference's model (vector observations: 17-dim, 6-dim actions; its widths in
:data:`SIZES`) is timed by ``reference_step.py`` with its own
``Trainer._train_step``; this project's model of the same family by its ``Trainer.train_step``,
in fp32 and with bf16 autocast, at the width whose trainable parameter count is closest to the
reference's (DreamerV3: the same latent groups and classes, deter = hidden = width; TD-MPC2: the
same latent size and 5 Q-functions, encoder and MLP width = width). Batches as each family
trains (DreamerV3 16 x 64 steps, TD-MPC2 256 x 3), random data; every run is a fresh process
and the three runs of a repeat follow each other, so all see the same machine load. Medians
over the repeats go to benchmarks/results/reference_throughput-FAMILY.md.
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
from typing import Any

HERE = Path(__file__).resolve().parent
#: per family: the batch shape, and per size the reference's width flags
FAMILIES: dict[str, dict[str, Any]] = {
    "dreamerv3": {
        "batch": (16, 64),
        "sizes": {
            "50k": {"deter": 40, "hidden": 40, "stoch": 8, "classes": 8},
            "500k": {"deter": 128, "hidden": 128, "stoch": 16, "classes": 16},
            "2m": {"deter": 192, "hidden": 192, "stoch": 32, "classes": 32},
            "5m": {"deter": 384, "hidden": 384, "stoch": 32, "classes": 32},
            "20m": {"deter": 992, "hidden": 992, "stoch": 32, "classes": 32},
        },
    },
    "tdmpc2": {
        "batch": (256, 3),
        "sizes": {
            "100k": {"latent": 32, "hidden": 64, "num-q": 5},
            "1m": {"latent": 128, "hidden": 296, "num-q": 5},
            "5m": {"latent": 512, "hidden": 552, "num-q": 5},
            "19m": {"latent": 768, "hidden": 1184, "num-q": 5},
        },
    },
}


def ours_kwargs(family: str, ref: dict[str, int], width: int) -> dict[str, Any]:
    """This project's model settings at ``width`` for the reference size ``ref``."""
    if family == "dreamerv3":
        return {"deter": width, "hidden": width, "layers": 2, "groups": ref["stoch"],
                "classes": ref["classes"]}  # fmt: skip
    return {"latent_dim": ref["latent"], "enc_dim": width, "mlp_dim": width, "enc_layers": 2,
            "num_q": ref["num-q"]}  # fmt: skip


def ours_params(family: str, kwargs: dict[str, Any]) -> int:
    import worldflux as wf

    model = wf.create_world_model(family, obs_shape=(17,), action_dim=6, **kwargs)
    return model.num_parameters(trainable_only=True)


def matched_width(family: str, ref: dict[str, int], target: int) -> int:
    """The width whose trainable parameter count is closest to ``target``."""
    low, high = 8, 4096
    while high - low > 1:  # parameter counts grow with the width
        mid = (low + high) // 2
        if ours_params(family, ours_kwargs(family, ref, mid)) < target:
            low = mid
        else:
            high = mid
    return min(
        (low, high), key=lambda w: abs(ours_params(family, ours_kwargs(family, ref, w)) - target)
    )


def ours_step(family: str, kwargs: dict[str, Any], bf16: bool, steps: int, threads: int) -> None:
    """One timed run of this project's Trainer (in a fresh process; prints ``samples/s=``)."""
    import torch

    sys.path.insert(0, str(HERE))
    from trainer_throughput import random_walk_store

    import worldflux as wf
    from worldflux.data import MinariBatchProvider
    from worldflux.training import Trainer, TrainerConfig

    torch.manual_seed(0)
    data = MinariBatchProvider.from_store(random_walk_store(17, 6), validation_fraction=0.1)
    model = wf.create_world_model(family, obs_shape=(17,), action_dim=6, **kwargs)
    batch, seq = FAMILIES[family]["batch"]
    config = TrainerConfig(
        steps=steps + 2, batch_size=batch, seq_len=seq, bf16=bf16, eval_every=0,
        checkpoint_every=0, log_every=steps + 2, threads=threads,
    )  # fmt: skip
    trainer = Trainer(model, data, config, progress=False)
    trainer.apply_threads()
    for _ in range(2):
        trainer.train_step()  # warm-up, as the reference's run
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    print(f"samples/s={batch * seq * steps / (time.perf_counter() - start):.1f}", flush=True)


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
    parser.add_argument("--family", choices=list(FAMILIES), default="dreamerv3")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--sizes", nargs="+", help="default: every size of the family")
    parser.add_argument("--ours", help=argparse.SUPPRESS)  # internal: "KEY=VALUE,...;BF16"
    args = parser.parse_args()
    family = FAMILIES[args.family]
    if args.ours:
        settings, bf16 = args.ours.split(";")
        kwargs = {k: int(v) for k, v in (item.split("=") for item in settings.split(","))}
        ours_step(args.family, kwargs, bool(int(bf16)), args.steps, args.threads)
        return
    if not args.reference_python:
        parser.error("give --reference-python (see the module docstring for the set-up)")
    sizes = args.sizes or list(family["sizes"])
    unknown = [s for s in sizes if s not in family["sizes"]]
    if unknown:
        parser.error(f"--sizes: expected some of {list(family['sizes'])}, got {unknown}")
    step = [args.reference_python, str(HERE / "reference_step.py"), "--family", args.family,
            "--threads", str(args.threads)]  # fmt: skip
    lines = [
        "| size | reference params | ours params | reference samples/s | ours fp32 | ours bf16 "
        "| fp32 / reference | bf16 / reference |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in sizes:
        ref = family["sizes"][size]
        ref_flags = [str(x) for k, v in ref.items() for x in (f"--{k}", v)]
        info = subprocess.run([*step, *ref_flags, "--params-only"], capture_output=True,
                              text=True, check=True).stdout  # fmt: skip
        counts = re.search(r"trainable: (\d+)", info) or re.search(r"params: (\d+)", info)
        assert counts is not None, info
        ref_params = int(counts.group(1))
        width = matched_width(args.family, ref, ref_params)
        kwargs = ours_kwargs(args.family, ref, width)
        params = ours_params(args.family, kwargs)
        settings = ",".join(f"{k}={v}" for k, v in kwargs.items())
        runs: dict[str, list[float]] = {"reference": [], "fp32": [], "bf16": []}
        for _ in range(args.repeats):
            runs["reference"].append(
                timed([*step, *ref_flags, "--steps", str(args.steps)], args.threads)
            )
            for name, bf16 in (("fp32", 0), ("bf16", 1)):
                ours = [sys.executable, __file__, "--family", args.family, "--threads",
                        str(args.threads), "--steps", str(args.steps), "--ours",
                        f"{settings};{bf16}"]  # fmt: skip
                runs[name].append(timed(ours, args.threads))
        ref_sps, fp32, bf16 = (statistics.median(runs[k]) for k in ("reference", "fp32", "bf16"))
        lines.append(
            f"| {size} | {ref_params:,} | {params:,} (width {width}) | {ref_sps:,.0f} "
            f"| {fp32:,.0f} | {bf16:,.0f} | {fp32 / ref_sps:.2f}x | {bf16 / ref_sps:.2f}x |"
        )
        print(lines[-1], {k: [round(v) for v in vs] for k, vs in runs.items()}, flush=True)
    batch, seq = family["batch"]
    note = (
        f"{args.family} training updates on batches of {batch} x {seq} steps (17-dim "
        f"observations, 6-dim actions), {args.threads} torch threads, medians of "
        f"{args.repeats} interleaved runs of {args.steps} updates after 2 warm-up updates; "
        "reference: github.com/worldflux/WorldFlux at eefc5a8 (its model and Trainer, fp32); "
        f"parameter counts without target copies; {time.strftime('%Y-%m-%d')}.\n\n"
    )
    table = note + "\n".join(lines) + "\n"
    print(table)
    out = HERE / "results" / f"reference_throughput-{args.family}.md"
    out.parent.mkdir(exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(table)
    tmp.replace(out)


if __name__ == "__main__":
    main()
