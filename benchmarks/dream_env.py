"""Dream-env throughput: environment steps per second of the dream vector env against the bare
model step (same model, same batch) and against the real Walker2d-v5 (MuJoCo).

    python benchmarks/dream_env.py [--repeats 5] [--seconds 1.0] [--batches 1 16 64 256 1024 4096]

* ``bare``: ``model.transition`` + ``decode`` on torch tensors with pre-drawn noise, under
  ``torch.inference_mode`` (what the wrapper cannot beat);
* ``dream``: ``DreamVectorEnv.step`` with numpy actions (noise hashing, action checks, transfers,
  termination sampling, autoreset included), fp32, and with the opt-in bf16 mode;
* ``bare onnx`` / ``dream onnx``: the same on the ONNX Runtime backend (``OnnxBackend.step`` with
  pre-drawn noise, and the dream vector env on it);
* ``walker``: ``gymnasium.make("Walker2d-v5")`` stepped alone, and a ``SyncVectorEnv`` of 8.

The model is the shipped ``WorldFlux/Dreamer-Walker-v0`` (``dreamerv3:proprio``, 17-dim
observations, 6-dim actions) when its artifact is built, else an untrained ``dreamerv3:proprio``
whose continue head is set to "always continue" (an untrained head ends about half the episodes
every step, and the benchmark would then measure resets). Measurements of one batch size are interleaved
(bare, dream, bf16, bare, ...) so they see the same machine load; the table gives medians over
``--repeats`` and the ratios of those medians. Saved to benchmarks/results/dream_env.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

import worldflux as wf
from worldflux.dream import LearnedSimulator, ResetStates, make_dream_env
from worldflux.dream.cards import find_card

RESULTS = Path(__file__).with_name("results") / "dream_env.md"
OBS, ACT = 17, 6


def steps_per_second(step: Callable[[], None], n: int, seconds: float) -> float:
    """Environment steps/s of ``step`` (which advances ``n`` environments)."""
    step()  # warm-up
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        count += 1
    return count * n / (time.perf_counter() - start)


def simulator() -> tuple[LearnedSimulator, str]:
    card = find_card("dreamer-walker")
    if card.built:
        return LearnedSimulator.from_artifact(card.artifact_dir), f"{card.id} (trained)"
    torch.manual_seed(0)
    model = wf.create_world_model("dreamerv3:proprio", obs_shape=(OBS,), action_dim=ACT)
    rng = np.random.default_rng(0)
    pool = rng.normal(size=(256, OBS)).astype(np.float32)
    head = model.component("decoder").cont[-1]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(20.0)
    sim = LearnedSimulator(
        model=model,
        observation_space=spaces.Box(-np.inf, np.inf, (OBS,), np.float64),
        action_space=spaces.Box(-1.0, 1.0, (ACT,), np.float32),
        reset_states=ResetStates(start=pool, any=pool),
        defaults={"horizon": 1000},
    )
    return sim, "untrained dreamerv3:proprio"


def bare_step(sim: LearnedSimulator, n: int) -> Callable[[], None]:
    model = sim.torch_model().eval()
    with torch.inference_mode():
        state = model.encode(torch.from_numpy(sim.reset_states.start[:1]).repeat(n, 1))
    action = torch.rand(n, ACT) * 2 - 1
    noise = {k: torch.rand(n, *v.shape) for k, v in model.noise_spec().items()}
    holder = {"state": state}

    def step() -> None:
        with torch.inference_mode():
            holder["state"] = model.transition(holder["state"], action, noise=noise)
            model.decode(holder["state"])

    return step


def bare_onnx_step(sim: LearnedSimulator, n: int) -> Callable[[], None]:
    backend = sim.make_backend("onnx")
    holder = {"state": backend.encode(np.repeat(sim.reset_states.start[:1], n, 0))}
    action = np.random.default_rng(0).uniform(-1, 1, (n, ACT)).astype(np.float32)
    noise = {
        k: np.random.default_rng(1).random((n, *v.shape), dtype=np.float32)
        for k, v in backend.noise_spec.items()
    }

    def step() -> None:
        holder["state"], _ = backend.step(holder["state"], action, noise)

    return step


def dream_step(
    sim: LearnedSimulator, n: int, bf16: bool, backend: str = "torch"
) -> Callable[[], None]:
    env = make_dream_env(sim, num_envs=n, backend=backend, bf16=bf16)
    env.reset(seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, (n, ACT)).astype(np.float32)
    return lambda: env.step(actions) and None


def walker_single() -> Callable[[], None]:
    env = gym.make("Walker2d-v5")
    env.reset(seed=0)
    action = env.action_space.sample()

    def step() -> None:
        _, _, term, trunc, _ = env.step(action)
        if term or trunc:
            env.reset()

    return step


def walker_sync(n: int) -> Callable[[], None]:
    env = gym.vector.SyncVectorEnv([lambda: gym.make("Walker2d-v5") for _ in range(n)])
    env.reset(seed=0)
    actions = env.action_space.sample()
    return lambda: env.step(actions) and None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64, 256, 1024, 4096])
    args = parser.parse_args()
    sim, which = simulator()
    walker = {"walker": walker_single(), "walker-sync8": walker_sync(8)}
    real = {k: [] for k in walker}  # type: dict[str, list[float]]
    rows = []
    for n in args.batches:
        fns = {
            "bare": bare_step(sim, n),
            "dream": dream_step(sim, n, bf16=False),
            "dream-bf16": dream_step(sim, n, bf16=True),
            "bare-onnx": bare_onnx_step(sim, n),
            "dream-onnx": dream_step(sim, n, bf16=False, backend="onnx"),
        }
        runs: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(args.repeats):
            for name, fn in fns.items():
                runs[name].append(steps_per_second(fn, n, args.seconds))
            for name, fn in walker.items():
                real[name].append(
                    steps_per_second(fn, 8 if name == "walker-sync8" else 1, args.seconds)
                )
        med = {k: statistics.median(v) for k, v in runs.items()}
        rows.append((n, med))
        print(
            f"batch {n:>5}: bare {med['bare']:>12,.0f}  dream {med['dream']:>12,.0f} "
            f"({med['dream'] / med['bare']:.2f}x)  bf16 {med['dream-bf16']:>12,.0f}  onnx "
            f"{med['dream-onnx']:>12,.0f} ({med['dream-onnx'] / med['bare-onnx']:.2f}x)",
            flush=True,
        )
    walker_med = {k: statistics.median(v) for k, v in real.items()}
    lines = [
        "# Dream env throughput (environment steps/s, medians)",
        "",
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; model {which} "
        f"(17-dim obs, 6-dim actions); {args.repeats} repeats of {args.seconds:.1f} s.",
        f"Real Walker2d-v5: single env {walker_med['walker']:,.0f} steps/s, SyncVectorEnv(8) "
        f"{walker_med['walker-sync8']:,.0f} steps/s (medians over all repeats).",
        "",
        "| envs | bare torch | dream torch | dream / bare | dream torch bf16 | bf16 / fp32 "
        "| bare onnx | dream onnx | dream / bare | dream onnx / real Walker |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    best_real = max(walker_med.values())
    for n, med in rows:
        lines.append(
            f"| {n} | {med['bare']:,.0f} | {med['dream']:,.0f} | {med['dream'] / med['bare']:.2f} "
            f"| {med['dream-bf16']:,.0f} | {med['dream-bf16'] / med['dream']:.2f} "
            f"| {med['bare-onnx']:,.0f} | {med['dream-onnx']:,.0f} "
            f"| {med['dream-onnx'] / med['bare-onnx']:.2f} | {med['dream-onnx'] / best_real:.2f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
