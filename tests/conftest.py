"""Shared fixtures: the toy family (registered once) and small synthetic batches."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
# MuJoCo renders headless (the CI machines have no display) unless told otherwise
os.environ.setdefault("MUJOCO_GL", "egl")


import toy_model

import worldflux as wf

OBS_DIM, ACTION_DIM = 4, 2


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Decoded-dataset caches of the tests go to a temporary folder, not ~/.cache."""
    os.environ["WORLDFLUX_CACHE"] = str(tmp_path_factory.mktemp("wf-cache"))


def make_batch(
    batch: int = 3, steps: int = 5, obs_dim: int = OBS_DIM, act: int = ACTION_DIM
) -> wf.Batch:
    g = torch.Generator().manual_seed(0)
    return wf.Batch(
        obs=torch.randn(batch, steps + 1, obs_dim, generator=g),
        actions=torch.randn(batch, steps, act, generator=g),
        rewards=torch.randn(batch, steps, generator=g),
        terminations=torch.zeros(batch, steps, dtype=torch.bool),
        truncations=torch.zeros(batch, steps, dtype=torch.bool),
    )


@pytest.fixture
def batch() -> wf.Batch:
    return make_batch()


@pytest.fixture
def toy() -> toy_model.ToyModel:
    torch.manual_seed(0)
    model = wf.create_world_model("toy:tiny", obs_shape=(OBS_DIM,), action_dim=ACTION_DIM)
    assert isinstance(model, toy_model.ToyModel)
    return model


@pytest.fixture(scope="session")
def local_ray() -> Iterator[Any]:
    """A local Ray instance of 2 CPUs for the sweep tests, started once (Ray sweeps use a Ray
    this process has initialised as it is)."""
    import ray

    from worldflux.sweep import WORKER_NICENESS

    os.environ.setdefault(WORKER_NICENESS, "0")  # as a sweep's own local Ray does
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 * 1024**2,
             log_to_driver=False)  # fmt: skip
    yield ray
    ray.shutdown()
