"""Slow: DreamerV3 on the Walker2d-v5 medium dataset, judged by the fidelity report.

Needs the dataset (`worldflux collect --recipe walker2d-medium`); run with `make test-slow`.
Targets (issue "DreamerV3 and PlaNet"): 1-step obs nRMSE <= 0.05, 15-step <= 0.3, 1-step reward
correlation >= 0.95.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from worldflux.data.minari_io import datasets_root

DATASET = "worldflux/walker2d/medium-v0"


@pytest.mark.slow
def test_dreamerv3_walker2d_medium_fidelity(tmp_path: Path) -> None:
    if not (datasets_root() / DATASET / "data").exists():
        pytest.skip(
            f"{DATASET} is not built here; run `worldflux collect --recipe walker2d-medium`"
        )
    from worldflux.training.run import train_run

    result = train_run(
        tmp_path / "run",
        model="dreamerv3:proprio",
        dataset=DATASET,
        trainer={
            "steps": 4000,
            "batch_size": 16,
            "seq_len": 64,
            "lr": 3e-4,
            "warmup_steps": 200,
            "eval_every": 1000,
            "checkpoint_every": 1000,
            "bf16": True,
        },
        progress=False,
    )
    fid = result["fidelity"]["metrics"]
    model, linear = fid["model"], fid["linear"]
    print(json.dumps({name: {k: fid[name][k] for k in ("1", "15")} for name in fid}, indent=1))
    assert model["1"]["obs_nrmse"] <= 0.05, (model["1"], linear["1"])
    assert model["15"]["obs_nrmse"] <= 0.3, (model["15"], linear["15"])
    assert model["1"]["reward_pearson"] >= 0.95, model["1"]
