"""Data-layer speed: load a 1M-step Minari dataset and sample batches from it.

Targets (issue "Minari data layer"): load <= 5 s; >= 2,000 batches/s of 16 x 64 sequences.

    python benchmarks/data_loading.py [--dataset ID ...] [--repeats 5]

It always measures a synthetic 1M-step dataset (1,000 episodes x 1,000 steps, 17-dim
observations, 6-dim actions, like Walker2d) in a temporary folder, then each --dataset. Prints a table
of medians and saves it to benchmarks/results/data_loading.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).with_name("results") / "data_loading.md"


def synthetic_dataset(root: Path, episodes: int = 1000, steps: int = 1000) -> str:
    """Write a Walker-shaped random dataset without simulating (fast)."""
    import gymnasium as gym
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    os.environ["MINARI_DATASETS_PATH"] = str(root)
    rng = np.random.default_rng(0)
    buffers = [
        EpisodeBuffer(
            id=i,
            observations=rng.normal(size=(steps + 1, 17)).astype(np.float64),
            actions=rng.uniform(-1, 1, size=(steps, 6)).astype(np.float32),
            rewards=list(rng.normal(size=steps)),
            terminations=[False] * (steps - 1) + [True],
            truncations=[False] * steps,
        )
        for i in range(episodes)
    ]
    env = gym.make("Walker2d-v5")
    minari.create_dataset_from_buffers(
        "bench/synthetic/walker-1m-v0",
        buffers,
        env="Walker2d-v5",
        algorithm_name="synthetic",
        observation_space=env.observation_space,
        action_space=env.action_space,
    )
    return "bench/synthetic/walker-1m-v0"


def measure(dataset_id: str, repeats: int) -> dict[str, float]:
    from worldflux.data import MinariBatchProvider

    cold, warm = [], []
    provider = None
    for _ in range(repeats):
        start = time.perf_counter()
        MinariBatchProvider(dataset_id, cache=False)
        cold.append(time.perf_counter() - start)
    MinariBatchProvider(dataset_id)  # fill the cache
    for _ in range(repeats):
        start = time.perf_counter()
        provider = MinariBatchProvider(dataset_id)
        warm.append(time.perf_counter() - start)
    assert provider is not None
    rates: dict[str, list[float]] = {"seq16x64": [], "trans256": []}
    for _ in range(repeats):
        for key, (b, t) in {"seq16x64": (16, 64), "trans256": (256, 1)}.items():
            n = 1000
            start = time.perf_counter()
            for _ in range(n):
                provider.sample(b, t)
            rates[key].append(n / (time.perf_counter() - start))
    return {
        "steps": provider.store.num_steps,
        "episodes": provider.store.num_episodes,
        "load_s": statistics.median(cold),
        "cached_load_s": statistics.median(warm),
        "seq16x64_per_s": statistics.median(rates["seq16x64"]),
        "trans256_per_s": statistics.median(rates["trans256"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", action="append", default=[], help="local Minari id(s)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["WORLDFLUX_CACHE"] = str(Path(tmp) / "cache")
        real_root = os.environ.get("MINARI_DATASETS_PATH")
        synthetic = synthetic_dataset(Path(tmp) / "minari")
        rows.append((synthetic, measure(synthetic, args.repeats)))
        if real_root is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = real_root
        for ds in args.dataset:
            rows.append((ds, measure(ds, args.repeats)))
    lines = [
        "| dataset | steps | episodes | load s from HDF5 (target <= 5) | load s, cached | "
        "16x64 batches/s (target >= 2000) | 256-transition batches/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for ds, r in rows:
        lines.append(
            f"| {ds} | {r['steps']:,} | {r['episodes']:,} | {r['load_s']:.2f} | "
            f"{r['cached_load_s']:.2f} | "
            f"{r['seq16x64_per_s']:,.0f} | {r['trans256_per_s']:,.0f} |"
        )
    table = "\n".join(lines)
    print(table)
    RESULTS.parent.mkdir(exist_ok=True)
    header = f"Medians of {args.repeats} runs; {os.cpu_count()} CPU cores; {time.strftime('%Y-%m-%d')}.\n\n"
    RESULTS.write_text(header + table + "\n")


if __name__ == "__main__":
    main()
