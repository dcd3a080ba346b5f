"""`worldflux train` and `worldflux evaluate` end to end on a tiny dataset (toy family as a plugin)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest
import synthetic_envs

from worldflux.data.collect import RandomPolicy, rollout_episodes, write_dataset

SCRIPT = Path(sys.executable).parent / "worldflux"
TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment of the subprocesses: a tiny dataset and the toy family installed as a plugin."""
    root = tmp_path_factory.mktemp("cli")
    site = root / "site"
    dist = site / "wf_toy_plugin-0.1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: wf-toy-plugin\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text("[worldflux.models]\ntoy = toy_model:plugin\n")
    minari_root = root / "minari"
    variables = {
        **os.environ,
        "MINARI_DATASETS_PATH": str(minari_root),
        "WORLDFLUX_CACHE": str(root / "cache"),
        "PYTHONPATH": os.pathsep.join([str(site), str(TESTS)]),
        "OMP_NUM_THREADS": "1",
    }
    synthetic_envs.register()
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(minari_root)
    try:
        space = gym.make("WFTest/Linear-v0").action_space
        eps = rollout_episodes(
            "WFTest/Linear-v0", RandomPolicy(space, 0), steps=3000, n_envs=4, seed=0, progress=False
        )
        write_dataset(
            "test/linear/random-v0",
            "WFTest/Linear-v0",
            eps,
            algorithm_name="random",
            description="cli test",
        )
    finally:
        if old is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = old
    return variables


def wf(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=600
    )


def test_train_then_evaluate(env: dict[str, str], tmp_path: Path) -> None:
    run = tmp_path / "run"
    res = wf(
        env,
        "train",
        "toy:tiny",
        "--dataset",
        "test/linear/random-v0",
        "--run-dir",
        str(run),
        "--steps",
        "150",
        "--batch-size",
        "32",
        "--seq-len",
        "4",
        "--eval-every",
        "50",
        "--checkpoint-every",
        "50",
        "--lr",
        "0.003",
        "--model-arg",
        "hidden=48",
        "--quiet",
    )
    assert res.returncode == 0, res.stderr
    assert "completed after 150 steps" in res.stdout and "samples/s" in res.stdout
    spec = json.loads((run / "run.json").read_text())
    assert spec["model_config"]["hidden"] == 48 and spec["trainer"]["steps"] == 150
    metrics = json.loads((run / "metrics.json").read_text())
    fid = metrics["fidelity"]["metrics"]
    assert fid["model"]["1"]["obs_nrmse"] < fid["copy"]["1"]["obs_nrmse"]
    for name in (
        "model/model.safetensors",
        "best/model.safetensors",
        "checkpoints/latest",
        "metrics.csv",
        "fidelity.md",
        "fidelity.png",
    ):
        assert (run / name).exists(), name

    res = wf(
        env,
        "evaluate",
        str(run),
        "--which",
        "best",
        "--horizons",
        "1",
        "5",
        "--windows",
        "64",
        "--no-shifted",  # the synthetic real env is not registered in the subprocess
    )
    assert res.returncode == 0, res.stderr
    assert "| 5 | linear |" in res.stdout
    assert (run / "fidelity-best.json").is_file()

    res = wf(env, "train", "--run-dir", str(run), "--resume", "--steps", "10")
    assert res.returncode != 0 and "continues with the run's saved settings" in res.stderr
    res = wf(env, "train", "toy:tiny", "--dataset", "other/x-v0", "--run-dir", str(run), "--resume")
    assert res.returncode != 0 and "started with dataset 'test/linear/random-v0'" in res.stderr
    res = wf(env, "train", "toy:tiny", "--dataset", "test/linear/random-v0", "--run-dir", str(run))
    assert res.returncode != 0 and "already holds a run" in res.stderr


def test_train_without_fidelity_and_with_a_validation_share(
    env: dict[str, str], tmp_path: Path
) -> None:
    run = tmp_path / "quick"
    res = wf(
        env,
        "train",
        "toy:tiny",
        "--dataset",
        "test/linear/random-v0",
        "--run-dir",
        str(run),
        "--steps",
        "5",
        "--seq-len",
        "4",
        "--validation-fraction",
        "0.3",
        "--no-fidelity",
        "--quiet",
    )
    assert res.returncode == 0, res.stderr
    assert json.loads((run / "run.json").read_text())["validation_fraction"] == 0.3
    assert not (run / "fidelity.json").exists() and "fidelity" not in json.loads(
        (run / "metrics.json").read_text()
    )


def test_train_bad_input(env: dict[str, str], tmp_path: Path) -> None:
    res = wf(
        env,
        "train",
        "toy:tiny",
        "--dataset",
        "test/linear/randm-v0",
        "--run-dir",
        str(tmp_path / "r"),
    )
    assert res.returncode != 0 and "Did you mean 'test/linear/random-v0'" in res.stderr
    res = wf(
        env,
        "train",
        "toy:tiny",
        "--dataset",
        "test/linear/random-v0",
        "--run-dir",
        str(tmp_path / "r"),
        "--model-arg",
        "hiden=3",
    )
    assert res.returncode != 0 and "Did you mean 'hidden'" in res.stderr
    res = wf(env, "evaluate", str(tmp_path))
    assert res.returncode != 0 and "expected a training run (run.json) or an artifact" in res.stderr
