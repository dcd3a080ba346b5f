"""Trainer throughput (samples/s = sequences x steps per second) with and without bf16 autocast.

    python benchmarks/trainer_throughput.py [--repeats 3] [--steps 60]

Uses the small test-only latent model of tests/toy_model.py (real families bring their own
benchmarks) at two widths, on an in-memory synthetic dataset, fp32 and bf16 side by side in one
run. Prints a table of medians and saves it to benchmarks/results/trainer_throughput.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import conftest  # noqa: F401  (registers the toy family)
from test_training import synthetic_store

import worldflux as wf
from worldflux.data import MinariBatchProvider
from worldflux.training import Trainer, TrainerConfig

RESULTS = Path(__file__).with_name("results") / "trainer_throughput.md"


def run(hidden: int, bf16: bool, steps: int, batch: int, seq: int) -> float:
    data = MinariBatchProvider.from_store(
        synthetic_store(episodes=100, steps=64), validation_fraction=0.1
    )
    torch.manual_seed(0)
    model = wf.create_world_model("toy:small", obs_shape=(4,), action_dim=2, hidden=hidden)
    cfg = TrainerConfig(
        steps=steps,
        batch_size=batch,
        seq_len=seq,
        bf16=bf16,
        eval_every=0,
        checkpoint_every=0,
        log_every=steps,
    )
    trainer = Trainer(model, data, cfg, progress=False)
    trainer.train_step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    return steps * batch * seq / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    lines = [
        "| model width | batch x seq | fp32 samples/s | bf16 samples/s | bf16 / fp32 |",
        "|---|---|---|---|---|",
    ]
    for hidden, batch, seq in ((64, 16, 64), (1024, 16, 64)):
        fp32, bf16 = [], []
        for _ in range(args.repeats):  # interleaved so both see the same machine load
            fp32.append(run(hidden, False, args.steps, batch, seq))
            bf16.append(run(hidden, True, args.steps, batch, seq))
        a, b = statistics.median(fp32), statistics.median(bf16)
        lines.append(f"| {hidden} | {batch} x {seq} | {a:,.0f} | {b:,.0f} | {b / a:.2f} |")
    table = "\n".join(lines)
    print(table)
    RESULTS.parent.mkdir(exist_ok=True)
    note = (
        f"Medians of {args.repeats} runs; torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads; {time.strftime('%Y-%m-%d')}.\n\n"
    )
    RESULTS.write_text(note + table + "\n")


if __name__ == "__main__":
    main()
