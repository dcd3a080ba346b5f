"""Slow: the probabilistic ensemble on the Walker2d-v5 medium dataset, judged by the fidelity
report (the same targets as the RSSM families) and by how well its uncertainty ranks its errors.

Needs the dataset (`worldflux collect --recipe walker2d-medium-deterministic`); run with `make test-slow`.
Targets: 1-step obs nRMSE <= 0.05, 15-step <= 0.3, 1-step reward correlation >= 0.95; the
epistemic uncertainty of one-step predictions on held-out transitions is rank-correlated with
their error (Spearman > 0.3). Trains with the shipped `WorldFlux/Ensemble-Walker-v0` budget
(envs/ensemble-walker.toml, about 8 minutes): measured 0.037, 0.130, 0.997, Spearman 0.77.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from test_ensemble import spearman

import worldflux as wf
from worldflux.core import BatchRequest
from worldflux.data.minari_io import datasets_root

DATASET = "worldflux/walker2d/medium-v0"


@pytest.mark.slow
def test_ensemble_walker2d_medium_fidelity(tmp_path: Path) -> None:
    if not (datasets_root() / DATASET / "data").exists():
        pytest.skip(
            f"{DATASET} is not built here; run `worldflux collect --recipe walker2d-medium-deterministic`"
        )
    from worldflux.data import MinariBatchProvider
    from worldflux.dream.cards import find_card
    from worldflux.training.run import train_run

    start = time.perf_counter()
    card = find_card("ensemble-walker")  # the shipped WorldFlux/Ensemble-Walker-v0 budget
    result = train_run(
        tmp_path / "run",
        model=card.model,
        dataset=DATASET,
        model_overrides=card.model_overrides,
        trainer=card.train,
        progress=False,
    )
    train_s = time.perf_counter() - start
    fid = result["fidelity"]["metrics"]
    model, linear = fid["model"], fid["linear"]
    table = {
        name: {k: {m: fid[name][k][m] for m in ("obs_nrmse", "reward_pearson")} for k in fid[name]}
        for name in fid
    }
    print(json.dumps(table, indent=1))
    print(f"steps {result['steps']} ({result['stop_reason']}), train + report {train_s:.0f} s")

    # uncertainty vs actual one-step error on held-out transitions
    net = wf.WorldModel.from_pretrained(tmp_path / "run" / "model")
    data = MinariBatchProvider(DATASET, validation_fraction=0.1)
    batch = data.get_batch(BatchRequest(4096, 1, split="validation", seed=1))
    with torch.no_grad():
        out = net.decode(
            net.transition(net.encode(batch.obs[:, 0]), batch.actions[:, 0], deterministic=True)
        )
    scale = torch.as_tensor(data.stats.obs_std)
    err = ((out.obs - batch.obs[:, 1]) / scale).norm(dim=-1)
    assert out.uncertainty is not None
    rho = spearman(out.uncertainty, err)
    print(f"elites {net.elite_indices}; Spearman(epistemic, one-step error) = {rho:.3f}")

    assert model["1"]["obs_nrmse"] <= 0.05, (model["1"], linear["1"])
    assert model["15"]["obs_nrmse"] <= 0.3, (model["15"], linear["15"])
    assert model["1"]["reward_pearson"] >= 0.95, model["1"]
    assert rho > 0.3, rho
