"""Start-up times: ``import torch``, ``import worldflux``, ``worldflux --version`` and the first
dream step of a shipped env card (ONNX Runtime, the default backend, and torch), each in a fresh
process, the cases interleaved so all see the same machine.

    python benchmarks/startup.py [--repeats 7] [--card dreamer-walker] [--note TEXT]

The first dream step counts ``import worldflux``, ``gym.make``, ``reset`` and one ``step``.
Prints a table of medians (with the ratio to ``import torch``) and saves it to
``benchmarks/results/startup.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from worldflux.files import write_text_atomic

RESULTS = Path(__file__).with_name("results") / "startup.md"


def dream_step(card_id: str, backend: str) -> str:
    return (
        "import gymnasium as gym, worldflux\n"
        f"env = gym.make({card_id!r}, backend={backend!r})\n"
        "env.reset(seed=0)\n"
        "env.step(env.action_space.sample())\n"
    )


def cases(card_id: str) -> list[tuple[str, list[str]]]:
    """(label, command) of every case; the commands run in a fresh interpreter."""
    py = [sys.executable, "-c"]
    return [
        ("python (no imports)", [*py, "pass"]),
        ("import torch", [*py, "import torch"]),
        ("import worldflux", [*py, "import worldflux"]),
        ("worldflux --version", [*py, "from worldflux.cli import main; main(['--version'])"]),
        ("first dream step, onnx", [*py, dream_step(card_id, "onnx")]),
        ("first dream step, torch", [*py, dream_step(card_id, "torch")]),
        ("import torch + create_world_model", [
            *py, "import worldflux as wf; wf.create_world_model('dreamerv3:tiny', obs_shape=(17,), "
            "action_dim=6)",
        ]),
    ]  # fmt: skip


def seconds(command: list[str]) -> float:
    """Wall seconds of one fresh process running ``command`` (which must succeed)."""
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{command[-1]!r} failed: {result.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--card", default="dreamer-walker", help="env card of the dream step")
    parser.add_argument("--note", default="", help="a line about the machine's load, saved")
    args = parser.parse_args()
    from worldflux.dream.cards import find_card

    card = find_card(args.card)
    todo = cases(card.id)
    for _, command in todo:  # warm the file cache once; not measured
        seconds(command)
    results: dict[str, list[float]] = {label: [] for label, _ in todo}
    for repeat in range(args.repeats):
        for label, command in todo:
            results[label].append(seconds(command))
        print(f"repeat {repeat + 1}/{args.repeats} done", flush=True)
    torch_s = statistics.median(results["import torch"])
    lines = [
        "| case (fresh process) | median (s) | min-max (s) | / import torch |",
        "|---|---:|---:|---:|",
    ]
    for label, _ in todo:
        times = results[label]
        med = statistics.median(times)
        lines.append(
            f"| {label} | {med:.2f} | {min(times):.2f}-{max(times):.2f} | {med / torch_s:.2f} |"
        )
    import torch

    note = (
        f"Wall time of a fresh Python process per case, medians of {args.repeats} interleaved "
        f"repeats after one warm-up; dream steps on `{card.id}`; {os.cpu_count()} CPUs; Python "
        f"{sys.version.split()[0]}; torch {torch.__version__}; {time.strftime('%Y-%m-%d')}. "
        f"{args.note}\n\n"
    )
    table = "\n".join(lines)
    print(table)
    RESULTS.parent.mkdir(exist_ok=True)
    write_text_atomic(RESULTS, note + table + "\n")


if __name__ == "__main__":
    main()
