"""Times training updates of the reference WorldFlux project's DreamerV3 or TD-MPC2 (run by
``reference_throughput.py`` with the reference's own Python; not importable from this project).

    REFENV/bin/python benchmarks/reference_step.py --family dreamerv3 --deter 256 --hidden 256 \
        --stoch 32 --classes 32 [--steps 10] [--warmup 2] [--threads 1] [--params-only]
    REFENV/bin/python benchmarks/reference_step.py --family tdmpc2 --latent 128 --hidden 296 \
        --num-q 5 [--simnorm 8] [--steps 10] [--warmup 2] [--threads 1] [--params-only]

Builds the reference's model for vector observations (17-dim, 6 continuous actions; DreamerV3
with MLP encoder and decoder) and runs its own ``Trainer._train_step`` (AdamW, gradient
clipping, its checks and logging, TD-MPC2's target-Q EMA) on random batches: DreamerV3 16 x 64
steps; TD-MPC2 256 sequences of ``--seq-len`` 3 transitions (its loss trains on the T - 1
transitions of T observations, so each sequence holds 4 steps). Prints ``params: N`` (every
parameter, target copies included), ``trainable: M`` and ``samples/s=X`` (sequences x
transitions per second).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from typing import Any

#: per family: its flags with defaults, batch size and transitions per sequence
FLAGS = {
    "dreamerv3": {"deter": 256, "hidden": 256, "stoch": 32, "classes": 32, "batch": 16,
                  "seq-len": 64},
    "tdmpc2": {"latent": 128, "hidden": 256, "num-q": 5, "simnorm": 8, "batch": 256,
               "seq-len": 3},
}  # fmt: skip


def build(family: str, args: argparse.Namespace) -> tuple[Any, int]:
    """The reference's model and the time steps per sequence it trains on."""
    from worldflux.models.dreamer.world_model import DreamerV3WorldModel
    from worldflux.models.tdmpc2.world_model import TDMPC2WorldModel

    from worldflux.core.config import DreamerV3Config, TDMPC2Config

    common = {"obs_shape": (17,), "action_dim": 6, "action_type": "continuous", "device": "cpu"}
    if family == "dreamerv3":
        config = DreamerV3Config(
            **common, encoder_type="mlp", decoder_type="mlp", deter_dim=args.deter,
            hidden_dim=args.hidden, stoch_discrete=args.stoch, stoch_classes=args.classes,
        )  # fmt: skip
        return DreamerV3WorldModel(config), args.seq_len
    config = TDMPC2Config(
        **common, latent_dim=args.latent, hidden_dim=args.hidden, num_q_networks=args.num_q,
        simnorm_dim=args.simnorm,
    )  # fmt: skip
    return TDMPC2WorldModel(config), args.seq_len + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=list(FLAGS), default="dreamerv3")
    for flag in sorted({f for flags in FLAGS.values() for f in flags}):
        parser.add_argument(f"--{flag}", type=int)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--params-only", action="store_true")
    args = parser.parse_args()
    for flag, default in FLAGS[args.family].items():
        name = flag.replace("-", "_")
        if getattr(args, name) is None:
            setattr(args, name, default)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch
    from worldflux.core.batch import Batch

    import worldflux  # the reference project's package
    from worldflux.training import Trainer, TrainingConfig

    if hasattr(worldflux, "make_dream_env"):  # this project's package, not the reference's
        raise SystemExit(f"expected the reference project's worldflux, got {worldflux.__file__}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, t = build(args.family, args)
    print(f"params: {sum(p.numel() for p in model.parameters())}", flush=True)
    print(f"trainable: {sum(p.numel() for p in model.parameters() if p.requires_grad)}")
    if args.params_only:
        return
    b = args.batch
    pool = [
        Batch(
            obs=torch.randn(b, t, 17),
            actions=torch.rand(b, t, 6) * 2 - 1,
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
    print(f"samples/s={b * args.seq_len * args.steps / seconds:.1f}", flush=True)


if __name__ == "__main__":
    main()
