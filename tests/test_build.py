"""`worldflux build CARD` end to end on a tiny card: dataset from its recipe, training run in
``--run-dir``, artifact with ONNX graphs; ``--resume`` finishes from the run's checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from worldflux import resources
from worldflux.cli import main
from worldflux.data import recipes
from worldflux.dream import make_dream_env

CARD = """
id = "WorldFluxTest/Build-Pendulum-v0"
source_env = "Pendulum-v1"
dataset_recipe = "test-pendulum"
model = "ensemble:tiny"
artifact = "test-pendulum-v0"
horizon = 200

[train]
steps = 200
batch_size = 64
seq_len = 1
eval_every = 100
checkpoint_every = 100

[defaults]
reset = "any"
"""


def test_build_command_and_its_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cards, exports = tmp_path / "envs", tmp_path / "exports"
    cards.mkdir()
    exports.mkdir()
    (cards / "test-pendulum.toml").write_text(CARD)
    folders = {"envs": cards, "exports": exports, "agents": tmp_path / "agents"}
    monkeypatch.setattr(resources, "data_dir", lambda name: folders[name])
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    recipe = {"env": "Pendulum-v1", "dataset_id": "test/pendulum/build-v0", "steps": 2000}
    monkeypatch.setattr(
        recipes,
        "load_recipes",
        lambda *a: {"behaviour": {}, "dataset": {"test-pendulum": {**recipe, "policy": "random"}}},
    )
    run = tmp_path / "run"
    assert main(["build", "test-pendulum", "--run-dir", str(run), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "[1/3] collecting test/pendulum/build-v0" in out
    summary = json.loads(out[out.index("{") :])
    artifact = exports / "test-pendulum-v0"
    assert summary["artifact"] == str(artifact)
    for name in (
        "manifest.json",
        "step.onnx",
        "encode.onnx",
        "fidelity.md",
        "shifted.md",
        "shifted.png",
        "model/config.json",
    ):
        assert (artifact / name).is_file(), name
    shifted = json.loads((artifact / "shifted.json").read_text())
    assert [p["name"] for p in shifted["policies"]] == ["random"]  # no behaviour policy here
    assert shifted["policies"][0]["real"]["length_median"] == 200  # Pendulum never terminates
    assert "random" in summary["shifted"]
    assert summary["after_training"] == {}  # the ensemble fits nothing after training
    assert (run / "run.json").is_file()
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert manifest["defaults"]["reset"] == "any" and manifest["info"]["card"] == "test-pendulum"

    # --resume: the dataset is reused and the finished run completes from its checkpoint
    (artifact / "step.onnx").unlink()
    assert main(["build", "test-pendulum", "--run-dir", str(run), "--resume", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "dataset test/pendulum/build-v0 is already built" in out
    assert (artifact / "step.onnx").is_file()
    # worldflux evaluate on the artifact: its flags reach the shifted-policy report
    from stable_baselines3 import PPO

    zip_file = tmp_path / "pendulum-ppo.zip"
    PPO("MlpPolicy", "Pendulum-v1", n_steps=64, seed=0).save(zip_file)
    out_dir = tmp_path / "report"
    args = ["evaluate", str(artifact), "--episodes", "3", "--horizons", "1", "4", "--seed", "2"]
    args += ["--behaviour-policy", str(zip_file), "--noise", "0.2", "--policy", f"mine={zip_file}"]
    assert main([*args, "--out", str(out_dir)]) == 0
    report = json.loads((out_dir / "shifted.json").read_text())
    names = [p["name"] for p in report["policies"]]
    assert names == ["random", "behaviour+noise0.2", "behaviour", "mine"]
    assert report["episodes"] == 3 and report["horizons"] == [1, 4]
    assert len(report["policies"][0]["real"]["lengths"]) == 3
    with pytest.raises(SystemExit, match="--policy expected NAME=PATH"):
        main(["evaluate", str(artifact), "--policy", "no-equals-sign"])
    # on the run: --shifted-only skips the held-out report, --no-shifted the comparison
    capsys.readouterr()
    assert main(["evaluate", str(run), "--shifted-only", "--episodes", "2", "--horizons", "1"]) == 0
    assert (run / "shifted.json").is_file() and not (run / "fidelity-model.json").exists()
    assert "Open-loop fidelity" not in capsys.readouterr().out
    assert main(["evaluate", str(run), "--no-shifted", "--windows", "8", "--horizons", "1"]) == 0
    assert "Dream vs real" not in capsys.readouterr().out

    env = make_dream_env(artifact)  # the built artifact is a dream env (ONNX by default)
    assert env.unwrapped.core.backend_name == "onnx"
    env.reset(seed=0)
    env.step(env.action_space.sample())
    assert main(["build", "no-such-card", "--quiet"]) == 2
    assert "no-such-card" in capsys.readouterr().err
