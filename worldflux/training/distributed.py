"""Multi-process training under ``torchrun`` with DistributedDataParallel.

``torchrun --nproc_per_node=N ...`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; the trainer
then joins the process group (``nccl`` on GPUs, ``gloo`` on CPUs), wraps the loss in DDP (gradients
averaged across ranks), gives each rank its own sampling stream, and lets only rank 0 write.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as torch_dist
from torch import nn

from ..core.errors import ConfigError


def check_device(requested: str) -> torch.device:
    """``torch.device(requested)`` after checking this machine has it: a clear
    :class:`ConfigError` (what was asked for, what there is) instead of a failure deep inside
    training."""
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError):
        raise ConfigError(
            f"TrainerConfig.device: expected a torch device such as 'cpu', 'cuda' or 'cuda:1', "
            f"got {requested!r}."
        ) from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index is not None and device.index >= count):
            have = (
                f"{count} CUDA device(s)" if count else "no CUDA device (or no CUDA build of torch)"
            )
            raise ConfigError(
                f"TrainerConfig.device: {requested!r} is not available; this machine has {have}. "
                "Use device 'cpu' (--device cpu) or one this machine has."
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(
            f"TrainerConfig.device: {requested!r} is not available on this machine; use device "
            "'cpu' (--device cpu)."
        )
    return device


@dataclass(frozen=True)
class DistContext:
    """Rank and world size of this process (single process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> DistContext:
        """Join the process group when started by torchrun; else a single-process context."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if not torch_dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            if backend == "nccl":
                torch.cuda.set_device(local)
            torch_dist.init_process_group(backend=backend)
        return cls(rank=rank, world_size=world, local_rank=local)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, requested: str) -> torch.device:
        """The device for this rank (``cuda`` becomes ``cuda:<local rank>`` under torchrun);
        :class:`ConfigError` when this machine has no such device."""
        device = check_device(requested)
        if device.type == "cuda" and self.world_size > 1:
            return check_device(f"cuda:{self.local_rank}")
        return device

    def wrap(self, module: nn.Module, device: torch.device) -> nn.Module:
        if self.world_size <= 1:
            return module
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids)

    def barrier(self) -> None:
        if self.world_size > 1:
            torch_dist.barrier()

    def all_true(self, flag: bool) -> bool:
        """True on every rank only if ``flag`` is true on every rank."""
        if self.world_size <= 1:
            return flag
        t = torch.tensor([1 if flag else 0], dtype=torch.int32)
        torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MIN)
        return bool(t.item())

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order (on every rank)."""
        if self.world_size <= 1:
            return [obj]
        out: list[Any] = [None] * self.world_size
        torch_dist.all_gather_object(out, obj)
        return out

    def sampling_seed(self, seed: int) -> int:
        """A different sampling stream per rank."""
        return seed + 1_000_003 * self.rank
