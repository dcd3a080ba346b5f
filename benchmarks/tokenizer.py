"""How well does the frame tokeniser of the token family reconstruct game frames?

    python benchmarks/tokenizer.py [--dataset worldflux/breakout/mixed-v0] [--steps 2000]
        [--grids 8 4] [--codes 512] [--batch-size 32] [--seed 0]

For each grid (tokens per side), trains :class:`~worldflux.models.token.tokenizer.FrameTokenizer`
on frames of the dataset's training episodes (Adam, lr 1e-3) and measures, on 1,024 frames of its
validation episodes: the reconstruction PSNR (mean and 5th percentile over frames), the PSNR of
the changing pixels only (those that differ from the previous frame, where the ball and paddle
are; 0 of them: not counted), the codes in use and the seconds per update. Baselines on the
same frames: the dataset's mean frame and the previous frame. Prints the table and saves it to
``benchmarks/results/tokenizer-<dataset name>.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from worldflux.core.batch_provider import BatchRequest
from worldflux.data.provider import MinariBatchProvider
from worldflux.eval.images import psnr
from worldflux.files import write_text_atomic
from worldflux.models.token.tokenizer import FrameTokenizer, TokenizerConfig, to_pixels

RESULTS = Path(__file__).with_name("results")


def masked_psnr(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> float:
    """PSNR (dB) over the pixels where ``mask`` ``[B, H, W]`` is set, all frames pooled."""
    err = (pred.float() - target.float()).pow(2).mean(1)[mask]
    return float(10.0 * torch.log10(255.0**2 / err.mean().clamp(min=1e-10)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="worldflux/breakout/mixed-v0")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--grids", type=int, nargs="+", default=[8, 4])
    parser.add_argument("--codes", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = MinariBatchProvider(args.dataset, validation_fraction=0.1, seed=args.seed)
    held = data.get_batch(BatchRequest(batch_size=1024, seq_len=1, split="validation", seed=1))
    prev, frames = held.obs[:, 0], held.obs[:, 1]  # uint8 [B, C, H, W]
    moving = (prev != frames).any(1)  # [B, H, W]
    mean_frame = data.get_batch(BatchRequest(4096, 1, seed=2)).obs[:, 0].float().mean(0)
    base = {
        "mean frame": to_pixels(mean_frame / 255.0 - 0.5).expand_as(frames),
        "previous frame": prev,
    }
    rows = []
    for name, pred in base.items():
        p = psnr(pred, frames)
        rows.append(
            (
                name,
                "-",
                float(p.mean()),
                float(p.quantile(0.05)),
                masked_psnr(pred, frames, moving),
                "-",
                "-",
            )
        )
    for grid in args.grids:
        torch.manual_seed(args.seed)
        config = TokenizerConfig(
            channels=frames.shape[1], size=frames.shape[-1], grid=grid, codes=args.codes
        )
        tok = FrameTokenizer(config)
        opt = torch.optim.Adam(tok.parameters(), 1e-3)
        started = time.perf_counter()
        for step in range(args.steps):
            batch = data.sample(args.batch_size, 1).obs[:, 0]
            loss, parts = tok.loss(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % 500 == 0:
                print(f"grid {grid} step {step}: recon {float(parts['recon']):.5f}, perplexity "
                      f"{float(parts['perplexity']):.1f}", flush=True)  # fmt: skip
        per_step = (time.perf_counter() - started) / args.steps
        tok.eval()
        with torch.no_grad():
            tokens = torch.cat([tok.encode(f) for f in frames.split(256)])
            rec = to_pixels(torch.cat([tok.decode(t) for t in tokens.split(256)]))
        p = psnr(rec, frames)
        rows.append((
            f"tokeniser {grid}x{grid}", f"{grid * grid}", float(p.mean()), float(p.quantile(0.05)),
            masked_psnr(rec, frames, moving), f"{tokens.unique().numel()} / {args.codes}",
            f"{per_step:.3f}",
        ))  # fmt: skip
    lines = [
        f"# Frame tokeniser on {args.dataset}",
        "",
        f"{args.steps:,} updates of {args.batch_size} frames per tokeniser (lr 1e-3, seed "
        f"{args.seed}); 1,024 validation frames; torch {torch.__version__}, 1 thread. "
        f"Changing pixels: {int(moving.sum()):,} of {moving.numel():,} "
        f"({100 * float(moving.float().mean()):.2f}%).",
        "",
        "| frames from | tokens per frame | PSNR (dB) | 5th percentile | PSNR of changing pixels | codes used | s per update |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *(f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]:.2f} | {r[4]:.2f} | {r[5]} | {r[6]} |" for r in rows),
    ]  # fmt: skip
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    write_text_atomic(RESULTS / f"tokenizer-{args.dataset.split('/')[1]}.md", text)


if __name__ == "__main__":
    main()
