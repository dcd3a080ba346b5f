"""How should an imagined token frame be drawn? Open-loop image fidelity of one trained `token`
run under each ``redraw_threshold``, next to copying the last frame.

The tokeniser's decoder blurs every cell by its reconstruction error. Decoding whole frames
(``None``, as IRIS does) pays that error everywhere at every step; redrawing only the cells
whose token changed (``0``) pays it only there; a threshold above 0 also keeps the pixels of a
redrawn cell whose decode is within that many levels of the previous frame.

    python benchmarks/token_redraw.py --run runs/token-breakout [--which model|best]
        [--thresholds none 0 24 48] [--windows 256] [--name breakout]

Metrics are those of `worldflux evaluate` (greedy rollouts of held-out windows with logged
actions, the same windows for every setting). Results go to
``benchmarks/results/token-redraw-<name>.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from worldflux.core.model import WorldModel
from worldflux.data.provider import MinariBatchProvider
from worldflux.eval.fidelity import fidelity_report
from worldflux.models import TokenModel

RESULTS = Path(__file__).with_name("results")


def threshold_value(text: str) -> float | None:
    """``"none"`` -> None (whole decodes), otherwise a level in [0, 255)."""
    return None if text.lower() == "none" else float(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="a `worldflux train` run of a token model")
    parser.add_argument("--which", choices=("model", "best"), default="model")
    parser.add_argument("--thresholds", nargs="+", default=["none", "0", "24", "48"])
    parser.add_argument("--windows", type=int, default=256)
    parser.add_argument("--name", default="breakout")
    args = parser.parse_args()
    torch.set_num_threads(1)
    run = Path(args.run)
    spec = json.loads((run / "run.json").read_text())
    model = WorldModel.from_pretrained(run / args.which)
    if not isinstance(model, TokenModel):
        raise SystemExit(f"{run}: expected a token-family run, got family {model.model_type!r}.")
    data = MinariBatchProvider(spec["dataset"], validation_fraction=spec["validation_fraction"])
    thresholds = [threshold_value(t) for t in args.thresholds]
    rows, copy = [], None
    for threshold in thresholds:
        model.config.redraw_threshold = threshold
        model.config.validate()
        started = time.perf_counter()
        torch.manual_seed(0)
        with torch.no_grad():
            report = fidelity_report(model, data, windows=args.windows)
        rows.append((threshold, report.metrics["model"], time.perf_counter() - started))
        copy = report.metrics["copy"]
        print(f"redraw_threshold {threshold}: done in {rows[-1][2]:.0f} s", flush=True)
    assert copy is not None
    horizons = sorted(copy)
    head = " | ".join(f"k={k} PSNR | k={k} SSIM" for k in horizons)
    lines = [
        f"# Token frames: redraw settings ({run.name}, {args.which})",
        "",
        f"{platform.machine()}, 1 torch thread; dataset `{spec['dataset']}`, {args.windows} "
        f"held-out windows, greedy open-loop rollouts with logged actions. Higher is better; "
        f"**bold**: above copying the last frame.",
        "",
        f"| frames | {head} |",
        "|---|" + "---:|" * (2 * len(horizons)),
    ]

    def cells(metrics: dict[int, dict[str, float]], bold: bool) -> str:
        out = []
        for k in horizons:
            for name, digits in (("psnr", 2), ("ssim", 4)):
                value = f"{metrics[k][name]:.{digits}f}"
                above = bold and metrics[k][name] > copy[k][name]
                out.append(f"**{value}**" if above else value)
        return " | ".join(out)

    for threshold, metrics, _ in rows:
        label = "whole decode (None)" if threshold is None else f"redraw_threshold {threshold:g}"
        lines.append(f"| {label} | {cells(metrics, True)} |")
    lines.append(f"| copy last frame | {cells(copy, False)} |")
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"token-redraw-{args.name}.md").write_text(text)


if __name__ == "__main__":
    main()
