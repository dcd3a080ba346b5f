"""A built wheel carries the env cards and artifacts: installed on its own (no source checkout
on the path), ``import worldflux`` registers every card and finds its artifact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json, gymnasium as gym, worldflux
from worldflux.dream.cards import load_cards
out = {"module": worldflux.__file__, "cards": {}}
for name, card in load_cards().items():
    entry = {"registered": card.id in gym.registry, "built": card.built,
             "artifact": str(card.artifact_dir), "onnx": card.onnx}
    if card.built:
        env = gym.make(card.id)
        obs, _ = env.reset(seed=0)
        env.step(env.action_space.sample())
        entry["made"] = True
        entry["backend"] = env.unwrapped.core.backend_name
    out["cards"][name] = entry
from worldflux.data.recipes import load_recipes, recipe_spec
out["behaviour"] = {name: recipe_spec(name).train.save_to for name, d in
                    load_recipes()["dataset"].items() if "behaviour:" in d.get("policy", "")}
print(json.dumps(out))
"""


def test_wheel_ships_cards_and_artifacts(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("worldflux-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    cards = sorted(p.name for p in (ROOT / "envs").glob("*.toml"))
    assert cards and all(f"worldflux/_data/envs/{c}" in names for c in cards)
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["module"].startswith(str(site)), out["module"]
    for name, entry in out["cards"].items():
        assert entry["registered"], name
        assert entry["artifact"].startswith(str(site)), entry
        built_here = (ROOT / "exports" / Path(entry["artifact"]).name / "manifest.json").is_file()
        assert entry["built"] == built_here, (name, entry)
        if built_here:
            assert entry.get("made"), name
            # shipped graphs travel in the wheel; torch-only cards (onnx = false) have none
            assert entry["backend"] == ("onnx" if entry["onnx"] else "torch"), entry
    # dataset recipes find their committed behaviour policies inside the wheel too
    assert out["behaviour"], out
    for name, file in out["behaviour"].items():
        assert file.startswith(str(site)) and Path(file).is_file(), (name, file)
