"""SAC gradient updates per second by device and critic count, with the MOPO-style agent's
settings (`worldflux offline`'s `mopo-sac`: 256 x 256 layer-normalised actor and critics, batches
of 256, learning rate 3e-4, entropy tuned automatically).

    python benchmarks/sac_updates.py [--devices cpu cuda] [--critics 2 10] [--updates 300]
        [--repeats 3] [--threads 1] [--obs-dim 17] [--action-dim 6] [--name NAME]

Every setting trains its own SAC on a replay buffer of random transitions (the update's cost does
not depend on what the batch holds), the settings interleaved in every repeat so all see the same
machine; CUDA is synchronised before each clock reading. Only the updates are timed: the dream
steps that fill the buffer in a real run are the dream env benchmark's (`dream_env.py`). Prints a
table of medians (updates per second, and each setting against the CPU with 2 critics) and saves
it to ``benchmarks/results/sac_updates-NAME.md``. Without ``--devices``: the CPU, and CUDA when
torch sees a GPU.
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from worldflux.files import write_text_atomic
from worldflux.rl.activations import resolve_policy_kwargs
from worldflux.rl.offline import OFF_POLICY_SETTINGS

RESULTS = Path(__file__).with_name("results")
BUFFER = 20_000


class _Spaces(gym.Env[np.ndarray, np.ndarray]):
    """Only the spaces: SAC needs an env to read them from; nothing is ever stepped."""

    def __init__(self, obs_dim: int, action_dim: int) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (action_dim,), np.float32)


def make_agent(device: str, critics: int, obs_dim: int, action_dim: int, seed: int) -> Any:
    """A SAC with the MOPO settings on ``device`` and a buffer of random transitions."""
    from stable_baselines3 import SAC
    from stable_baselines3.common.logger import configure

    settings = copy.deepcopy(OFF_POLICY_SETTINGS)
    settings["policy_kwargs"]["n_critics"] = critics
    settings["buffer_size"] = BUFFER
    agent = SAC(
        "MlpPolicy",
        _Spaces(obs_dim, action_dim),
        device=device,
        seed=seed,
        verbose=0,
        **resolve_policy_kwargs(settings),
    )
    agent.set_logger(configure(None, []))
    rng = np.random.default_rng(seed)
    buffer = agent.replay_buffer
    n = BUFFER
    buffer.observations[:n] = rng.standard_normal((n, 1, obs_dim), dtype=np.float32)
    buffer.next_observations[:n] = rng.standard_normal((n, 1, obs_dim), dtype=np.float32)
    buffer.actions[:n] = rng.uniform(-1, 1, (n, 1, action_dim)).astype(np.float32)
    buffer.rewards[:n] = rng.standard_normal((n, 1), dtype=np.float32)
    buffer.dones[:n] = rng.random((n, 1)) < 0.01
    buffer.full = True
    return agent


def time_updates(agent: Any, updates: int) -> float:
    """Seconds for ``updates`` gradient updates of ``agent``."""
    sync = torch.cuda.synchronize if agent.device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    agent.train(gradient_steps=updates, batch_size=agent.batch_size)
    sync()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", nargs="+", help="torch devices (default: cpu, and cuda)")
    parser.add_argument("--critics", nargs="+", type=int, default=[2, 10])
    parser.add_argument("--updates", type=int, default=300, help="updates per timed run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--obs-dim", type=int, default=17)
    parser.add_argument("--action-dim", type=int, default=6)
    parser.add_argument("--name", default="cpu")
    args = parser.parse_args()
    devices = args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    torch.set_num_threads(args.threads)
    settings = [(device, critics) for device in devices for critics in args.critics]
    agents = {s: make_agent(*s, args.obs_dim, args.action_dim, seed=0) for s in settings}
    for agent in agents.values():  # warm-up: allocations, kernels, Adam's state
        time_updates(agent, 20)
    seconds: dict[tuple[str, int], list[float]] = {s: [] for s in settings}
    for repeat in range(args.repeats):
        for s in settings:
            seconds[s].append(time_updates(agents[s], args.updates))
        print(f"repeat {repeat + 1}/{args.repeats} done", flush=True)
    rate = {s: args.updates / statistics.median(seconds[s]) for s in settings}
    base = rate.get(("cpu", 2))
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    lines = [
        f"# SAC gradient updates per second ({args.name})",
        "",
        f"{platform.machine()}, torch {torch.__version__} ({args.threads} CPU threads), {gpu}; "
        f"{args.obs_dim}-dim observations, {args.action_dim}-dim actions, the `mopo-sac` "
        f"settings (batch 256, 256 x 256 layer-normalised networks). Medians of "
        f"{args.repeats} runs of {args.updates} updates, interleaved.",
        "",
        "| device | critics | updates/s | vs cpu, 2 critics |",
        "|---|---:|---:|---:|",
    ]
    for device, critics in settings:
        ratio = f"{rate[(device, critics)] / base:.2f}" if base else "-"
        lines.append(f"| {device} | {critics} | {rate[(device, critics)]:,.0f} | {ratio} |")
    table = "\n".join(lines) + "\n"
    RESULTS.mkdir(exist_ok=True)
    write_text_atomic(RESULTS / f"sac_updates-{args.name}.md", table)
    print(table)


if __name__ == "__main__":
    main()
