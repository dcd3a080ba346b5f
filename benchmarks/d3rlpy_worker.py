"""d3rlpy's BC, TD3+BC and IQL on a dataset exported by ``validate_baselines.py``, scored on the
real environment the same way (the first episode of ``episodes`` environments seeded ``seed``,
``seed + 1``, ...). Runs in a side environment that has d3rlpy 2.8.1 (installed with
``--no-deps``: d3rlpy pins gymnasium 1.0) and never imports worldflux.

    python benchmarks/d3rlpy_worker.py DATA.npz OUT.json --env Walker2d-v5 --algo iql
        --steps 100000 --every 10000 --episodes 10 --seed 0 --eval-seed 20000

The settings are d3rlpy's own reproduction settings for each algorithm (its
``reproductions/offline`` scripts), with batch 256 for BC as well.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np


def make_algo(name: str, steps: int) -> Any:
    import d3rlpy

    scaler = d3rlpy.preprocessing.StandardObservationScaler()
    if name == "bc":
        return d3rlpy.algos.BCConfig(
            learning_rate=1e-3, batch_size=256, observation_scaler=scaler
        ).create(device="cpu:0")
    if name == "td3bc":
        return d3rlpy.algos.TD3PlusBCConfig(
            actor_learning_rate=3e-4,
            critic_learning_rate=3e-4,
            batch_size=256,
            target_smoothing_sigma=0.2,
            target_smoothing_clip=0.5,
            alpha=2.5,
            update_actor_interval=2,
            observation_scaler=scaler,
        ).create(device="cpu:0")
    if name == "iql":
        return d3rlpy.algos.IQLConfig(
            actor_learning_rate=3e-4,
            critic_learning_rate=3e-4,
            actor_optim_factory=d3rlpy.optimizers.AdamFactory(
                lr_scheduler_factory=d3rlpy.optimizers.CosineAnnealingLRFactory(T_max=steps)
            ),
            batch_size=256,
            weight_temp=3.0,
            max_weight=100.0,
            expectile=0.7,
            reward_scaler=d3rlpy.preprocessing.ReturnBasedRewardScaler(multiplier=1000.0),
            observation_scaler=scaler,
        ).create(device="cpu:0")
    raise SystemExit(f"algo: expected bc, td3bc or iql, got {name!r}")


def real_return(env_id: str, algo: Any, episodes: int, seed: int) -> dict[str, Any]:
    venv = gym.make_vec(env_id, num_envs=episodes, vectorization_mode="sync")
    try:
        obs, _ = venv.reset(seed=seed)
        returns = np.zeros(episodes)
        running = np.ones(episodes, bool)
        while running.any():
            obs, reward, terminated, truncated, _ = venv.step(algo.predict(obs.astype(np.float32)))
            returns += np.where(running, reward, 0.0)
            running &= ~(np.asarray(terminated) | np.asarray(truncated))
    finally:
        venv.close()
    return {"mean": float(returns.mean()), "std": float(returns.std())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data")
    parser.add_argument("out")
    parser.add_argument("--env", required=True)
    parser.add_argument("--algo", required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--every", type=int, required=True)
    parser.add_argument("--episodes", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--eval-seed", type=int, required=True)
    args = parser.parse_args()

    import d3rlpy

    d3rlpy.seed(args.seed)
    arrays = np.load(args.data)
    dataset = d3rlpy.dataset.MDPDataset(
        observations=arrays["observations"],
        actions=arrays["actions"],
        rewards=arrays["rewards"],
        terminals=arrays["terminals"],
        timeouts=arrays["timeouts"],
    )
    algo = make_algo(args.algo, args.steps)
    curve = []
    start = time.time()
    with tempfile.TemporaryDirectory() as logs:
        fitter = algo.fitter(
            dataset,
            n_steps=args.steps,
            n_steps_per_epoch=args.every,
            experiment_name=f"{args.algo}-{args.seed}",
            with_timestamp=False,
            logger_adapter=d3rlpy.logging.FileAdapterFactory(root_dir=logs),
            show_progress=False,
            save_interval=10**9,
        )
        for epoch, _ in fitter:
            score = real_return(args.env, algo, args.episodes, args.eval_seed)
            curve.append({"updates": epoch * args.every, "real": score})
            print(
                f"d3rlpy {args.algo} {epoch * args.every} updates: {score['mean']:.1f}", flush=True
            )
    result = {"impl": "d3rlpy", "algo": args.algo, "seed": args.seed, "curve": curve,
              "seconds": time.time() - start, "version": d3rlpy.__version__}  # fmt: skip
    out = Path(args.out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)


if __name__ == "__main__":
    main()
