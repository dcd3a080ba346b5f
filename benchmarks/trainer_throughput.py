"""Trainer throughput of every family (samples/s = sequences x steps per second), fp32 and
bf16 autocast.

    python benchmarks/trainer_throughput.py [--repeats 3] [--steps 30] [--threads 1]

Each registered family at a preset for vector observations (17-dim, 6-dim actions, random-walk
data) with the batch shape it trains with in this project (the sequence families 16 x 64,
``ensemble`` 256 x 1, ``tdmpc2`` 256 x 3, ``jepa`` 256 x 4), and the test-only toy model at two
widths. fp32 and bf16 runs are interleaved so both see the same machine load. Torch uses
``--threads`` intra-op threads (default 1; the count is saved with the table). Prints a table of
medians and saves it to benchmarks/results/trainer_throughput.md. The comparison with the
reference project's DreamerV3 is ``reference_throughput.py``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import conftest  # noqa: F401  (registers the test-only "toy" family)

import worldflux as wf
from worldflux.data import EpisodeStore, MinariBatchProvider
from worldflux.data.spaces import ActionLayout, ObservationLayout
from worldflux.files import write_text_atomic
from worldflux.training import Trainer, TrainerConfig

RESULTS = Path(__file__).with_name("results") / "trainer_throughput.md"


def random_walk_store(
    obs_dim: int, act_dim: int, episodes: int = 40, steps: int = 200
) -> EpisodeStore:
    rng = np.random.default_rng(0)
    eps = []
    for _ in range(episodes):
        actions = rng.uniform(-1, 1, (steps, act_dim))
        obs = np.cumsum(rng.normal(size=(steps + 1, obs_dim)) * 0.1, axis=0)
        eps.append(
            {
                "observations": obs,
                "actions": actions,
                "rewards": rng.normal(size=steps),
                "terminations": np.zeros(steps, bool),
                "truncations": np.eye(steps, dtype=bool)[-1],
            }
        )
    return EpisodeStore.from_episodes(
        eps, ObservationLayout("vector", (obs_dim,)), ActionLayout("continuous", act_dim)
    )


def run(
    spec: str,
    overrides: dict[str, Any],
    dims: tuple[int, int],
    shape: tuple[int, int],
    bf16: bool,
    steps: int,
    threads: int,
) -> float:
    data = MinariBatchProvider.from_store(random_walk_store(*dims), validation_fraction=0.1)
    torch.manual_seed(0)
    model = wf.create_world_model(spec, obs_shape=(dims[0],), action_dim=dims[1], **overrides)
    batch, seq = shape
    cfg = TrainerConfig(
        steps=steps + 1,
        batch_size=batch,
        seq_len=seq,
        bf16=bf16,
        eval_every=0,
        checkpoint_every=0,
        log_every=steps + 1,
        threads=threads,
    )
    trainer = Trainer(model, data, cfg, progress=False)
    trainer.apply_threads()  # what fit() does first; this loop calls train_step() directly
    trainer.train_step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    return steps * batch * seq / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    walker = (17, 6)
    cases: list[tuple[str, dict[str, Any], tuple[int, int], tuple[int, int]]] = [
        ("toy:small", {"hidden": 64}, (4, 2), (16, 64)),
        ("toy:small", {"hidden": 1024}, (4, 2), (16, 64)),
        ("dreamerv3:proprio", {}, walker, (16, 64)),
        ("dreamerv3:small", {}, walker, (16, 64)),
        ("planet:paper", {}, walker, (16, 64)),
        ("ensemble:small", {}, walker, (256, 1)),
        ("tdmpc2:1m", {}, walker, (256, 3)),
        ("jepa:small", {}, walker, (256, 4)),
    ]
    lines = [
        "| model | params | batch | fp32 samples/s | bf16 samples/s | bf16 / fp32 |",
        "|---|---|---|---|---|---|",
    ]
    for spec, overrides, dims, shape in cases:
        label = spec + "".join(f" {k}={v}" for k, v in overrides.items())
        params = wf.create_world_model(
            spec, obs_shape=(dims[0],), action_dim=dims[1], **overrides
        ).num_parameters()
        fp32, bf16 = [], []
        for _ in range(args.repeats):
            fp32.append(run(spec, overrides, dims, shape, False, args.steps, args.threads))
            bf16.append(run(spec, overrides, dims, shape, True, args.steps, args.threads))
        a, b = statistics.median(fp32), statistics.median(bf16)
        lines.append(
            f"| {label} | {params / 1e6:.2f}M | {shape[0]} x {shape[1]} | {a:,.0f} | {b:,.0f} "
            f"| {b / a:.2f} |"
        )
        print(lines[-1], flush=True)
    table = "\n".join(lines)
    print(table)
    RESULTS.parent.mkdir(exist_ok=True)
    note = (
        f"Vector observations (17-dim, 6-dim actions; toy: 4 and 2); medians of {args.repeats} runs of {args.steps} steps; torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads; {time.strftime('%Y-%m-%d')}.\n\n"
    )
    write_text_atomic(RESULTS, note + table + "\n")


if __name__ == "__main__":
    main()
