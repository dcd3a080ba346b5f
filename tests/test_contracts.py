"""Data and planner contracts, noise specs, and the component protocols."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_batch

import worldflux as wf
from worldflux.core import (
    ROLES,
    ConfigError,
    ContractError,
    NoiseSpec,
    sample_noise_numpy,
    sample_noise_torch,
)


class InMemoryProvider:
    """A provider implementing both data protocols over one fixed batch."""

    def __init__(self, batch: wf.Batch) -> None:
        self.batch = batch

    def sample(self, batch_size: int, seq_len: int = 1) -> wf.Batch:
        b = self.batch
        return wf.Batch(
            obs=b.obs[:batch_size, : seq_len + 1],
            actions=b.actions[:batch_size, :seq_len],
            rewards=b.rewards[:batch_size, :seq_len],
            terminations=b.terminations[:batch_size, :seq_len],
            truncations=b.truncations[:batch_size, :seq_len],
        )

    def get_batch(self, request: wf.BatchRequest) -> wf.Batch:
        batch = self.sample(request.batch_size, request.seq_len)
        return batch.to(request.device) if request.device else batch


def test_batch_provider_protocols() -> None:
    provider = InMemoryProvider(make_batch(batch=4, steps=6))
    assert isinstance(provider, wf.BatchProvider)
    assert isinstance(provider, wf.BatchProviderV2)
    assert not isinstance(object(), wf.BatchProviderV2)
    batch = provider.get_batch(
        wf.BatchRequest(batch_size=2, seq_len=3, split="validation", device="cpu")
    )
    assert (batch.batch_size, batch.seq_len, batch.obs.shape[1]) == (2, 3, 4)


def test_batch_request_validation() -> None:
    with pytest.raises(ConfigError, match="batch_size: expected an int >= 1, got 0"):
        wf.BatchRequest(batch_size=0)
    with pytest.raises(ConfigError, match="split: expected 'train' or 'validation', got 'test'"):
        wf.BatchRequest(batch_size=1, split="test")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="BatchRequest.device"):
        wf.BatchRequest(batch_size=1, device="gpu0")


def test_planner_output_requires_horizon() -> None:
    out = wf.PlannerOutput(torch.zeros(2, 3), {wf.PLANNER_HORIZON_KEY: 12})
    assert out.horizon == 12
    with pytest.raises(
        ContractError, match=r"expected key 'wf.planner.horizon', got keys \['value'\]"
    ):
        wf.PlannerOutput(torch.zeros(2, 3), {"value": torch.zeros(2)})
    with pytest.raises(ContractError, match="expected an int >= 1, got 0"):
        wf.PlannerOutput(torch.zeros(2, 3), {wf.PLANNER_HORIZON_KEY: 0})


def test_noise_samplers_follow_spec() -> None:
    spec = {"a": NoiseSpec((3,), "normal"), "b": NoiseSpec((2, 2), "uniform")}
    t = sample_noise_torch(spec, (5, 4), generator=torch.Generator().manual_seed(0))
    n = sample_noise_numpy(spec, (5, 4), np.random.default_rng(0))
    for out in (t, n):
        assert tuple(out["a"].shape) == (5, 4, 3) and tuple(out["b"].shape) == (5, 4, 2, 2)
        assert out["a"].dtype in (torch.float32, np.float32)
    assert float(n["b"].min()) >= 0 and float(n["b"].max()) < 1
    with pytest.raises(ContractError, match="distribution: expected 'normal' or 'uniform'"):
        NoiseSpec((1,), "gumbel")  # type: ignore[arg-type]


def test_five_roles_are_defined() -> None:
    assert set(ROLES) == {
        "observation_encoder",
        "action_conditioner",
        "dynamics_model",
        "decoder",
        "rollout_executor",
    }
