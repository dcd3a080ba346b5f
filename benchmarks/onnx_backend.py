"""Dream-env throughput by backend: environment steps/s of the dream vector env on torch (eager)
and on ONNX Runtime, with the same model, batch and seeds, and what ``backend="auto"`` picks.

    python benchmarks/onnx_backend.py [--device cpu|cuda] [--cards dreamer-walker ensemble-walker]
        [--batches 1 16 64 256 1024 4096] [--repeats 5] [--seconds 1.0]

Each row times ``DreamVectorEnv.step`` (noise hashing, action checks, host copies, termination
sampling and autoresets included) for every backend, interleaved (torch, onnx, auto, torch, ...)
so they see the same machine load; the table gives medians over ``--repeats`` and their ratios.
``--device cuda`` runs torch on CUDA and ONNX Runtime's CUDA execution provider with IO binding
(the state stays on the GPU), and adds ONNX Runtime on the CPU for reference. Results go to
``benchmarks/results/onnx_backend_<device>.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

import worldflux  # noqa: F401  (registers the cards)
from worldflux.dream import make_dream_env

RESULTS = Path(__file__).with_name("results")


def steps_per_second(env: Any, actions: np.ndarray, seconds: float) -> float:
    """Environment steps/s of ``env.step(actions)`` over about ``seconds``."""
    env.step(actions)  # warm-up
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.step(actions)
        count += 1
    return count * len(actions) / (time.perf_counter() - start)


def bench(card: str, n: int, device: str, repeats: int, seconds: float) -> dict[str, Any]:
    variants: dict[str, dict[str, Any]] = {
        "torch": {"backend": "torch", "device": device},
        "onnx": {"backend": "onnx", "device": device},
        "auto": {"backend": "auto", "device": device},
    }
    if device != "cpu":
        variants["onnx-cpu"] = {"backend": "onnx", "device": "cpu"}
    envs = {}
    for name, kwargs in variants.items():
        env = make_dream_env(card, num_envs=n, **kwargs)
        env.reset(seed=0)
        envs[name] = env
    actions = np.random.default_rng(0).uniform(-1, 1, (n, 6)).astype(np.float32)
    samples: dict[str, list[float]] = {name: [] for name in envs}
    for _ in range(repeats):
        for name, env in envs.items():
            samples[name].append(steps_per_second(env, actions, seconds))
    row: dict[str, Any] = {name: statistics.median(v) for name, v in samples.items()}
    row["auto_choice"] = envs["auto"].core.backend_name
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cards", nargs="+", default=["dreamer-walker", "ensemble-walker"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 16, 64, 256, 1024, 4096])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import onnxruntime as ort
    import torch

    lines = [
        f"# Dream-env steps/s by backend ({args.device})",
        "",
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; torch "
        f"{torch.__version__} ({torch.get_num_threads()} threads), onnxruntime {ort.__version__}"
        + (f", {torch.cuda.get_device_name()}" if args.device != "cpu" else "")
        + f". Medians of {args.repeats} runs of {args.seconds:.1f} s each, interleaved.",
        "",
    ]
    extra = " | onnx-cpu" if args.device != "cpu" else ""
    header = f"| env | envs | torch | onnx{extra} | auto (picks) | onnx/torch | auto/best |"
    lines += [header, "|" + "---|" * (header.count("|") - 1)]
    print("\n".join(lines), flush=True)
    for card in args.cards:
        for n in args.batches:
            r = bench(card, n, args.device, args.repeats, args.seconds)
            best = max(r["torch"], r["onnx"])
            cells = [card, str(n), f"{r['torch']:,.0f}", f"{r['onnx']:,.0f}"]
            if args.device != "cpu":
                cells.append(f"{r['onnx-cpu']:,.0f}")
            cells += [
                f"{r['auto']:,.0f} ({r['auto_choice']})",
                f"{r['onnx'] / r['torch']:.2f}",
                f"{r['auto'] / best:.2f}",
            ]
            line = "| " + " | ".join(cells) + " |"
            lines.append(line)
            print(line, flush=True)
    out = args.out or RESULTS / f"onnx_backend_{args.device.split(':')[0]}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
