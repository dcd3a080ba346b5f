"""Trainer throughput (samples/s = sequences x steps per second), fp32 and bf16 autocast.

    python benchmarks/trainer_throughput.py [--repeats 3] [--steps 30] [--threads 1]

Models: the small test-only latent model of tests/toy_model.py at two widths, and
``dreamerv3:small`` on Walker2d-shaped data (17-dim observations, 6-dim actions); batch 16 x 64.
fp32 and bf16 runs are interleaved so both see the same machine load. Torch uses ``--threads``
intra-op threads (default 1; the count is saved with the table). Prints a table of medians and
saves it to benchmarks/results/trainer_throughput.md.
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
    bf16: bool,
    steps: int,
    threads: int,
) -> float:
    data = MinariBatchProvider.from_store(random_walk_store(*dims), validation_fraction=0.1)
    torch.manual_seed(0)
    model = wf.create_world_model(spec, obs_shape=(dims[0],), action_dim=dims[1], **overrides)
    batch, seq = 16, 64
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
    cases = [
        ("toy:small", {"hidden": 64}, (4, 2), "toy width 64"),
        ("toy:small", {"hidden": 1024}, (4, 2), "toy width 1024"),
        ("dreamerv3:small", {}, (17, 6), "dreamerv3:small, 17-dim obs"),
    ]
    lines = [
        "| model | params | fp32 samples/s | bf16 samples/s | bf16 / fp32 |",
        "|---|---|---|---|---|",
    ]
    for spec, overrides, dims, label in cases:
        params = wf.create_world_model(
            spec, obs_shape=(dims[0],), action_dim=dims[1], **overrides
        ).num_parameters()
        fp32, bf16 = [], []
        for _ in range(args.repeats):
            fp32.append(run(spec, overrides, dims, False, args.steps, args.threads))
            bf16.append(run(spec, overrides, dims, True, args.steps, args.threads))
        a, b = statistics.median(fp32), statistics.median(bf16)
        lines.append(f"| {label} | {params / 1e6:.2f}M | {a:,.0f} | {b:,.0f} | {b / a:.2f} |")
        print(lines[-1], flush=True)
    table = "\n".join(lines)
    print(table)
    RESULTS.parent.mkdir(exist_ok=True)
    note = (
        f"Batch 16 x 64; medians of {args.repeats} runs of {args.steps} steps; torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads; {time.strftime('%Y-%m-%d')}.\n\n"
    )
    write_text_atomic(RESULTS, note + table + "\n")


if __name__ == "__main__":
    main()
