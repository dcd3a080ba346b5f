"""Times training updates of the reference WorldFlux project's TD-MPC2 (run by
``reference_throughput.py --family tdmpc2`` with the reference's own Python).

    REFENV/bin/python benchmarks/reference_tdmpc2_step.py --latent 128 --hidden 296 \
        --num-q 5 [--simnorm 8] [--batch 256] [--seq-len 3] [--steps 10] [--warmup 2] \
        [--threads 1] [--params-only]

Builds the reference's ``TDMPC2WorldModel`` for vector observations (17-dim, 6 continuous
actions by default) and runs its own ``Trainer._train_step`` (AdamW, gradient clipping, its
checks and logging, then the EMA of its target Q ensemble) on random batches. Its loss trains on
the T - 1 transitions of T observations, so each sequence holds ``--seq-len`` + 1 steps.
Prints ``params: N`` (the target copy included), ``trainable: M`` (without it) and
``samples/s=X`` with X = batch x seq_len x steps / seconds (transitions per second).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, default, help_ in (
        ("--obs-dim", 17, "observation dimension"),
        ("--action-dim", 6, "continuous action dimension"),
        ("--latent", 128, "TDMPC2Config.latent_dim (SimNorm latent width)"),
        ("--hidden", 256, "TDMPC2Config.hidden_dim (width of every MLP)"),
        ("--num-q", 5, "TDMPC2Config.num_q_networks (Q ensemble size)"),
        ("--simnorm", 8, "TDMPC2Config.simnorm_dim (must divide --latent)"),
        ("--batch", 256, "sequences per update"),
        ("--seq-len", 3, "horizon H: transitions per sequence (H + 1 observations)"),
        ("--steps", 10, "timed updates"),
        ("--warmup", 2, "untimed updates first"),
        ("--threads", 1, "torch intra-op threads"),
    ):
        parser.add_argument(flag, type=int, default=default, help=help_)
    parser.add_argument("--params-only", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch
    from worldflux.core.batch import Batch
    from worldflux.models.tdmpc2.world_model import TDMPC2WorldModel

    import worldflux  # the reference project's package
    from worldflux.core.config import TDMPC2Config
    from worldflux.training import Trainer, TrainingConfig

    if hasattr(worldflux, "make_dream_env"):  # this project's package, not the reference's
        raise SystemExit(f"expected the reference project's worldflux, got {worldflux.__file__}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = TDMPC2Config(
        obs_shape=(args.obs_dim,), action_dim=args.action_dim, action_type="continuous",
        latent_dim=args.latent, hidden_dim=args.hidden, num_q_networks=args.num_q,
        simnorm_dim=args.simnorm, device="cpu",
    )  # fmt: skip
    model = TDMPC2WorldModel(config)
    print(f"params: {sum(p.numel() for p in model.parameters())}", flush=True)
    print(f"trainable: {sum(p.numel() for p in model.parameters() if p.requires_grad)}", flush=True)
    if args.params_only:
        return
    b, h = args.batch, args.seq_len
    t = h + 1  # the reference's loss trains on T - 1 transitions of T observations
    pool = [
        Batch(
            obs=torch.randn(b, t, args.obs_dim),
            actions=torch.rand(b, t, args.action_dim) * 2 - 1,
            rewards=torch.randn(b, t),
            terminations=torch.zeros(b, t),
        )
        for _ in range(4)
    ]

    def batches() -> Iterator[Any]:
        while True:
            yield from pool

    data = batches()
    out = tempfile.mkdtemp(prefix="reference-tdmpc2-step-")
    try:
        trainer = Trainer(
            model,
            TrainingConfig(
                total_steps=10**9, batch_size=b, sequence_length=t, device="cpu",
                output_dir=out, log_interval=10**9, save_interval=10**9,
            ),
        )  # fmt: skip
        for _ in range(args.warmup):
            trainer._train_step(data)
        start = time.perf_counter()
        for _ in range(args.steps):
            trainer._train_step(data)
        seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(out, ignore_errors=True)
    print(f"samples/s={b * h * args.steps / seconds:.1f}", flush=True)


if __name__ == "__main__":
    main()
