"""Validate WorldFlux's offline baselines (BC, TD3+BC, IQL) against d3rlpy's on the same dataset:
learning curves of the real return every N gradient updates, both scored the same way (the first
episode of ``--episodes`` real environments with the same seeds).

    python benchmarks/validate_baselines.py worldflux/walker2d/medium-v1
        [--algos bc td3bc iql] [--impls worldflux d3rlpy] [--steps 100000] [--every 10000]
        [--episodes 10] [--seeds 0] [--d3rlpy-python runs/d3rlpy-venv/bin/python] [--name NAME]
        [--threads 1]

d3rlpy 2.8.1 pins gymnasium 1.0, so it runs in a side environment that has it (its own
dependencies, then ``pip install --no-deps d3rlpy==2.8.1``), through ``d3rlpy_worker.py``; the
dataset goes there as an ``.npz``. Finished runs are kept under ``runs/validate-baselines-NAME/``
and skipped when the script is run again (resumable; invocations with different ``--impls``
can run in parallel); the table of every finished run goes to
``benchmarks/results/validate_baselines-NAME.md``. Hours on 2 CPU cores for 100k updates of all
six: not part of the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from worldflux.data.episodes import EpisodeStore
from worldflux.data.minari_io import load_minari_dataset
from worldflux.data.provider import MinariBatchProvider
from worldflux.files import write_text_atomic
from worldflux.rl.baselines import (
    Checkpoints,
    OfflinePolicy,
    Transitions,
    behaviour_cloning,
    iql,
    return_range_scale,
    td3_bc,
)
from worldflux.rl.evaluate import real_env_episodes

RESULTS = Path(__file__).with_name("results")
WORKER = Path(__file__).with_name("d3rlpy_worker.py")
TRAINERS = {"bc": behaviour_cloning, "td3bc": td3_bc, "iql": iql}


def export_npz(store: EpisodeStore, path: Path) -> None:
    """The dataset as d3rlpy's flat episode arrays (every episode ends in a terminal or a
    timeout)."""
    before, _ = store.obs_rows(np.arange(store.num_steps))
    ends = np.cumsum(store.lengths) - 1
    terminals = store.terminations.astype(np.float32)
    timeouts = np.zeros_like(terminals)
    timeouts[ends] = 1.0 - terminals[ends]
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(
        tmp,
        observations=store.obs[before].astype(np.float32),
        actions=store.actions.astype(np.float32),
        rewards=store.rewards.astype(np.float32),
        terminals=terminals,
        timeouts=timeouts,
    )
    tmp.replace(path)


def use_threads(count: int) -> None:
    """``count`` torch intra-op threads here and in processes started from here
    (``OMP_NUM_THREADS``, which training with ``threads="auto"`` keeps too)."""
    import torch

    os.environ["OMP_NUM_THREADS"] = str(count)
    torch.set_num_threads(count)


def run_worldflux(
    algo: str,
    store: EpisodeStore,
    space: spaces.Box,
    env_id: str,
    args: argparse.Namespace,
    seed: int,
) -> dict[str, Any]:
    data = Transitions.from_store(store, space)
    curve: list[dict[str, Any]] = []
    eval_seed = 20_000 + seed

    def score(updates: int, policy: OfflinePolicy) -> None:
        real = real_env_episodes(env_id, policy, args.episodes, eval_seed)
        curve.append({"updates": updates, "real": {"mean": real.mean, "std": real.std}})
        print(f"worldflux {algo} {updates} updates: {real.mean:.1f}", flush=True)

    extra = {"reward_scale": return_range_scale(store)} if algo == "iql" else {}
    start = time.time()
    policy = TRAINERS[algo](
        data,
        space,
        steps=args.steps,
        seed=seed,
        progress=False,
        checkpoints=Checkpoints(args.every, score),
        **extra,
    )
    score(args.steps, policy)
    return {"impl": "worldflux", "algo": algo, "seed": seed, "curve": curve,
            "seconds": time.time() - start, "threads": args.threads}  # fmt: skip


def run_d3rlpy(
    algo: str, data: Path, env_id: str, args: argparse.Namespace, seed: int, out: Path
) -> dict[str, Any]:
    python = Path(args.d3rlpy_python)
    if not python.is_file():
        raise SystemExit(
            f"--d3rlpy-python {python}: no such interpreter; make a side environment with "
            "d3rlpy 2.8.1 installed with --no-deps (see this script's docstring)."
        )
    subprocess.run(
        [str(python), str(WORKER), str(data), str(out), "--env", env_id, "--algo", algo,
         "--steps", str(args.steps), "--every", str(args.every), "--episodes",
         str(args.episodes), "--seed", str(seed), "--eval-seed", str(20_000 + seed)],
        check=True,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.read_text())
    result["threads"] = args.threads  # the worker's torch reads OMP_NUM_THREADS (use_threads)
    write_text_atomic(out, json.dumps(result, indent=2) + "\n")
    return result


def table(results: list[dict[str, Any]], dataset_id: str, args: argparse.Namespace) -> str:
    columns = sorted({(r["impl"], r["algo"]) for r in results}, key=lambda k: (k[1], k[0]))
    updates = sorted({p["updates"] for r in results for p in r["curve"]})

    def cell(impl: str, algo: str, n: int) -> str:
        values = [
            p["real"]["mean"]
            for r in results
            if (r["impl"], r["algo"]) == (impl, algo)
            for p in r["curve"]
            if p["updates"] == n
        ]
        return f"{np.mean(values):.0f}" if values else ""

    seeds = sorted({r["seed"] for r in results})
    lines = [
        f"# Offline baselines, WorldFlux vs d3rlpy: {dataset_id}",
        "",
        f"Real return (mean of the first episode of {args.episodes} environments, seeds "
        f"20000 + seed onwards) every {args.every:,} gradient updates; seeds {seeds} "
        "(mean over seeds). Same dataset, same evaluation; d3rlpy uses its reproduction "
        "settings (batch 256).",
        "",
        "| updates | " + " | ".join(f"{algo} ({impl})" for impl, algo in columns) + " |",
        "|---:|" + "---:|" * len(columns),
    ]
    for n in updates:
        lines.append(
            f"| {n:,} | " + " | ".join(cell(impl, algo, n) for impl, algo in columns) + " |"
        )
    lines += ["", "Wall time (minutes, per run):", ""]
    for r in sorted(results, key=lambda r: (r["algo"], r["impl"], r["seed"])):
        threads = f" ({r['threads']} torch threads)" if "threads" in r else ""
        lines.append(
            f"- {r['algo']} ({r['impl']}), seed {r['seed']}: {r['seconds'] / 60:.1f}{threads}"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset_id")
    parser.add_argument("--algos", nargs="+", default=["bc", "td3bc", "iql"], choices=TRAINERS)
    parser.add_argument(
        "--impls", nargs="+", default=["worldflux", "d3rlpy"], choices=("worldflux", "d3rlpy")
    )
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--every", type=int, default=10_000)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--d3rlpy-python", default="runs/d3rlpy-venv/bin/python")
    parser.add_argument("--name", help="default: the dataset id with / replaced by -")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (saved with the table)"
    )
    args = parser.parse_args()
    use_threads(args.threads)
    name = args.name or args.dataset_id.replace("/", "-")
    folder = Path("runs") / f"validate-baselines-{name}"
    folder.mkdir(parents=True, exist_ok=True)
    dataset = load_minari_dataset(args.dataset_id)
    env_spec, space = dataset.env_spec, dataset.action_space
    if env_spec is None or not isinstance(space, spaces.Box):
        raise SystemExit(
            f"{args.dataset_id}: expected a dataset that records its environment and has a Box "
            f"action space, got env {env_spec} and action space {space}."
        )
    env_id = env_spec.id
    store = MinariBatchProvider(args.dataset_id).store
    npz = folder / "dataset.npz"
    for algo in args.algos:
        for impl in args.impls:
            for seed in args.seeds:
                out = folder / f"{impl}-{algo}-s{seed}-{args.steps}-{args.every}.json"
                if not out.is_file():
                    if impl == "worldflux":
                        result = run_worldflux(algo, store, space, env_id, args, seed)
                        write_text_atomic(out, json.dumps(result, indent=2) + "\n")
                    else:
                        if not npz.is_file():
                            export_npz(store, npz)
                        run_d3rlpy(algo, npz, env_id, args, seed, out)
                # every finished run of these settings, also those of a parallel invocation
                done = sorted(folder.glob(f"*-{args.steps}-{args.every}.json"))
                text = table([json.loads(f.read_text()) for f in done], args.dataset_id, args)
                write_text_atomic(RESULTS / f"validate_baselines-{name}.md", text)
    print(text)


if __name__ == "__main__":
    main()
