"""Times training updates of the reference WorldFlux project's DreamerV3 (run by
``reference_throughput.py`` with the reference's own Python; not importable from this project).

    REFENV/bin/python benchmarks/reference_step.py --deter 256 --hidden 256 --stoch 32 \
        --classes 32 [--steps 10] [--warmup 2] [--threads 2] [--params-only]

Builds the reference's ``DreamerV3WorldModel`` for vector observations (MLP encoder and
decoder; 17-dim observations, 6-dim actions by default) and runs its own
``Trainer._train_step`` (AdamW, gradient clipping, its checks and logging) on random batches of
16 x 64 steps. Prints ``params: N`` and ``samples/s=X`` (sequences x steps per second).
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
    for flag, default in (("--obs-dim", 17), ("--action-dim", 6), ("--deter", 256),
                          ("--hidden", 256), ("--stoch", 32), ("--classes", 32),
                          ("--batch", 16), ("--seq-len", 64), ("--steps", 10),
                          ("--warmup", 2), ("--threads", 2)):  # fmt: skip
        parser.add_argument(flag, type=int, default=default)
    parser.add_argument("--params-only", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch
    from worldflux.core.batch import Batch
    from worldflux.models.dreamer.world_model import DreamerV3WorldModel

    import worldflux  # the reference project's package
    from worldflux.core.config import DreamerV3Config
    from worldflux.training import Trainer, TrainingConfig

    if hasattr(worldflux, "make_dream_env"):  # this project's package, not the reference's
        raise SystemExit(f"expected the reference project's worldflux, got {worldflux.__file__}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = DreamerV3Config(
        obs_shape=(args.obs_dim,), action_dim=args.action_dim, action_type="continuous",
        encoder_type="mlp", decoder_type="mlp", deter_dim=args.deter, hidden_dim=args.hidden,
        stoch_discrete=args.stoch, stoch_classes=args.classes, device="cpu",
    )  # fmt: skip
    model = DreamerV3WorldModel(config)
    print(f"params: {sum(p.numel() for p in model.parameters())}", flush=True)
    if args.params_only:
        return
    b, t = args.batch, args.seq_len
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

    out = tempfile.mkdtemp(prefix="reference-step-")
    try:
        trainer = Trainer(
            model,
            TrainingConfig(
                total_steps=10**9, batch_size=b, sequence_length=t, device="cpu",
                output_dir=out, log_interval=10**9, save_interval=10**9,
            ),
        )  # fmt: skip
        data = batches()
        for _ in range(args.warmup):
            trainer._train_step(data)
        start = time.perf_counter()
        for _ in range(args.steps):
            trainer._train_step(data)
        seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(out, ignore_errors=True)
    print(f"samples/s={b * t * args.steps / seconds:.1f}", flush=True)


if __name__ == "__main__":
    main()
