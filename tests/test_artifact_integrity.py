"""Artifact integrity: the manifest records the sha256 of every file (and of its own content) and
loading checks them; corrupt or incomplete artifacts (manifest, reset states, graphs) give a
:class:`SerializationError` that names the file and what was expected, never a raw traceback;
artifacts without hashes load with a warning and are re-hashed by ``python -m worldflux.export``."""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

import worldflux as wf
from worldflux.core.errors import ConfigError, SerializationError
from worldflux.dream import LearnedSimulator, ResetStates
from worldflux.dream.cards import load_cards
from worldflux.dream.manifest import (
    INTEGRITY,
    MANIFEST,
    RESET_STATES,
    UnverifiedArtifactWarning,
    manifest_text,
    sealed,
    sha256_file,
)
from worldflux.export.__main__ import main as export_main
from worldflux.export.artifact import rehash_artifact, verify_artifact

OBS_DIM, ACT_DIM = 5, 2
CARDS = load_cards()
SHIPPED = [name for name in sorted(CARDS) if CARDS[name].built]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ensemble artifact with ONNX graphs, calibration and a report file."""
    torch.manual_seed(0)
    model = wf.create_world_model("ensemble:tiny", obs_shape=(OBS_DIM,), action_dim=ACT_DIM)
    rng = np.random.default_rng(0)
    sim = LearnedSimulator(
        model=model,
        observation_space=spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float64),
        action_space=spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32),
        reset_states=ResetStates(
            start=rng.normal(size=(8, OBS_DIM)).astype(np.float32),
            any=rng.normal(size=(30, OBS_DIM)).astype(np.float32),
        ),
        defaults={"horizon": 20, "halt": "p99"},
        calibration={"p50": 0.1, "p99": 0.9},
    )
    root = tmp_path_factory.mktemp("artifact")
    report = root / "fidelity.md"
    report.write_text("# fidelity\n")
    return sim.save_artifact(root / "art", extra_files=(report,))


@pytest.fixture
def art(artifact: Path, tmp_path: Path) -> Path:
    """A fresh copy of the artifact, for a test to damage."""
    return Path(shutil.copytree(artifact, tmp_path / "art"))


def load_quietly(folder: Path) -> LearnedSimulator:
    """``from_artifact`` with every warning an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return LearnedSimulator.from_artifact(folder)


def manifest_of(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / MANIFEST).read_text())
    return data


def write_manifest(folder: Path, data: dict[str, Any], *, seal: bool = True) -> None:
    """Write ``data`` as the manifest, with hashes of the files now there (``seal``) or
    without any integrity section: a damaged artifact whose hashes do not give it away."""
    data = sealed(folder, data) if seal else {k: v for k, v in data.items() if k != INTEGRITY}
    (folder / MANIFEST).write_text(manifest_text(data))


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


# -- 1. hashes: recorded on export, checked on load ------------------------------------------------
def test_export_records_the_sha256_of_every_file(artifact: Path) -> None:
    section = manifest_of(artifact)[INTEGRITY]
    files = sorted(
        p.relative_to(artifact).as_posix()
        for p in artifact.rglob("*")
        if p.is_file() and p.name != MANIFEST
    )
    assert sorted(section["files"]) == files
    assert {"step.onnx", RESET_STATES, "model/model.safetensors", "fidelity.md"} <= set(files)
    for name, record in section["files"].items():
        assert record == {
            "bytes": (artifact / name).stat().st_size,
            "sha256": sha256_file(artifact / name),
        }
    sim = load_quietly(artifact)  # a fresh artifact loads without a warning
    assert sim.onnx is not None and sim.calibration == {"p50": 0.1, "p99": 0.9}


@pytest.mark.parametrize(
    "name",
    [
        "step.onnx",
        "encode.onnx",
        "replace.onnx",
        RESET_STATES,
        "model/model.safetensors",
        "model/config.json",
        "fidelity.md",
    ],
)
def test_a_flipped_byte_is_an_error_naming_the_file(art: Path, name: str) -> None:
    expected = manifest_of(art)[INTEGRITY]["files"][name]["sha256"]
    flip_byte(art / name)
    found = sha256_file(art / name)
    with pytest.raises(SerializationError, match="sha256 mismatch") as info:
        LearnedSimulator.from_artifact(art)
    message = str(info.value)
    assert str(art / name) in message and expected in message and found in message
    assert "rehash" in message  # says how to accept an intended change


def test_a_truncated_or_missing_file_is_named(art: Path) -> None:
    step = art / "step.onnx"
    size = step.stat().st_size
    step.write_bytes(step.read_bytes()[: size // 2])
    with pytest.raises(SerializationError, match=rf"expected {size} bytes .*found {size // 2}"):
        LearnedSimulator.from_artifact(art)
    step.unlink()
    with pytest.raises(SerializationError, match=r"step\.onnx: missing; the manifest lists it"):
        LearnedSimulator.from_artifact(art)


def test_every_file_the_loader_reads_must_be_listed(art: Path) -> None:
    manifest = manifest_of(art)
    del manifest[INTEGRITY]["files"][RESET_STATES]
    manifest[INTEGRITY]["manifest"] = sealed(art, manifest)[INTEGRITY]["manifest"]
    (art / MANIFEST).write_text(manifest_text(manifest))
    with pytest.raises(SerializationError, match=r"lists no hash for \['reset_states\.npz'\]"):
        LearnedSimulator.from_artifact(art)


def test_unlisted_extra_files_are_ignored(art: Path) -> None:
    (art / "notes.txt").write_text("added after export; never read")
    load_quietly(art)


def test_the_manifest_content_is_hashed(art: Path) -> None:
    manifest = manifest_of(art)
    recorded = manifest[INTEGRITY]["manifest"]
    manifest["calibration"]["p99"] = 0.95  # valid, but not what was exported
    (art / MANIFEST).write_text(manifest_text(manifest))
    with pytest.raises(SerializationError, match="content does not match") as info:
        LearnedSimulator.from_artifact(art)
    assert str(art / MANIFEST) in str(info.value) and recorded in str(info.value)
    # formatting is not content: re-indenting the file keeps it valid
    (art / MANIFEST).write_text(
        json.dumps(manifest_of(art) | {"calibration": {"p50": 0.1, "p99": 0.9}})
    )
    load_quietly(art)


# -- artifacts written before the hashes: a warning, and a command that records them -----------
def test_an_artifact_without_hashes_loads_with_a_warning_until_rehashed(art: Path) -> None:
    write_manifest(art, manifest_of(art), seal=False)
    with pytest.warns(UnverifiedArtifactWarning, match=r"python -m worldflux\.export rehash"):
        LearnedSimulator.from_artifact(art)
    with pytest.raises(UnverifiedArtifactWarning):
        verify_artifact(art)
    assert export_main(["verify", str(art)]) == 1
    assert export_main(["rehash", str(art)]) == 0
    assert set(manifest_of(art)[INTEGRITY]["files"]) >= {"step.onnx", RESET_STATES}
    load_quietly(art)
    assert export_main(["verify", str(art)]) == 0
    flip_byte(art / "encode.onnx")
    assert export_main(["verify", str(art)]) == 1


def test_rehash_refuses_a_broken_artifact(art: Path) -> None:
    shutil.copy2(art / "encode.onnx", art / "step.onnx")
    before = (art / MANIFEST).read_text()
    with pytest.raises(SerializationError, match=r"step\.onnx: does not fit"):
        rehash_artifact(art)
    assert (art / MANIFEST).read_text() == before  # nothing written


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_artifacts_record_their_hashes_and_load(name: str) -> None:
    card = CARDS[name]
    manifest = manifest_of(card.artifact_dir)
    graphs = {"step.onnx", "encode.onnx", "replace.onnx"} if card.onnx else set()
    assert graphs | {RESET_STATES} <= set(manifest[INTEGRITY]["files"])
    verify_artifact(card.artifact_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnverifiedArtifactWarning)
        env = gym.make(card.id)
    env.reset(seed=0)
    env.step(env.action_space.sample())


# -- 2. corrupt or incomplete manifests ----------------------------------------------------------
def edit(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(manifest: dict[str, Any]) -> None:
        manifest[key] = value

    return apply


def drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda manifest: manifest.pop(key)


def set_calibration(value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(manifest: dict[str, Any]) -> None:
        manifest["calibration"]["p99"] = value

    return apply


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (drop("observation_space"), r"missing required keys \['observation_space'\]"),
        (drop("family"), r"missing required keys \['family'\]"),
        (edit("calibraton", {}), r"Unknown manifest key 'calibraton'\. Did you mean 'calibration'"),
        (set_calibration("high"), r"calibration\['p99'\]: expected a number, got 'high'"),
        (set_calibration(float("nan")), r"calibration\['p99'\]: expected a finite number"),
        (set_calibration(True), r"calibration\['p99'\]: expected a number, got True"),
        (edit("calibration", [0.5]), r"calibration: expected object, got \[0\.5\]"),
        (edit("format_version", 99), "format_version 99 is not supported"),
        (edit("format_version", "1"), "format_version: expected an integer"),
        (edit("defaults", {"reset": "middle"}), "defaults: dream setting reset"),
        (edit("defaults", {"halt": "p75"}), "defaults.halt: expected a number or one of"),
        (edit("observation_space", {"type": "Box"}), "observation_space: expected"),
        (edit("action_space", {"type": "Dict"}), "action_space: expected"),
        (edit("onnx", {"layout_version": 1}), "onnx: malformed ONNX layout"),
        (edit(INTEGRITY, {"algorithm": "md5"}), "integrity: expected keys"),
    ],
)
def test_a_malformed_manifest_is_an_error_naming_it(
    art: Path, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    manifest = manifest_of(art)
    change(manifest)
    if not message.startswith(INTEGRITY):  # hashes that accept the change: the checks must not
        manifest = sealed(art, manifest)
    (art / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(SerializationError, match=message) as info:
        LearnedSimulator.from_artifact(art)
    assert str(art / MANIFEST) in str(info.value)


def test_a_manifest_that_is_not_json_or_not_an_object(art: Path) -> None:
    text = (art / MANIFEST).read_text()
    (art / MANIFEST).write_text(text[: len(text) // 2])
    with pytest.raises(SerializationError, match=r"manifest\.json: not valid JSON"):
        LearnedSimulator.from_artifact(art)
    (art / MANIFEST).write_bytes(b"\xff\xfe{")
    with pytest.raises(SerializationError, match=r"manifest\.json: not valid JSON"):
        LearnedSimulator.from_artifact(art)
    (art / MANIFEST).write_text("[1, 2]")
    with pytest.raises(SerializationError, match="expected a JSON object .*got list"):
        LearnedSimulator.from_artifact(art)
    (art / MANIFEST).unlink()
    with pytest.raises(ConfigError, match="no manifest.json"):
        LearnedSimulator.from_artifact(art)


def test_the_layout_must_fit_the_spaces(art: Path) -> None:
    manifest = manifest_of(art)
    manifest["onnx"]["action_dim"] = ACT_DIM + 1
    write_manifest(art, manifest)
    with pytest.raises(SerializationError, match=r"the graphs take .*actions \[3\].*actions \[2\]"):
        LearnedSimulator.from_artifact(art)


# -- 2. corrupt reset states ---------------------------------------------------------------------
_unpickled: list[str] = []


def _mark_unpickled() -> str:
    _unpickled.append("unpickled")
    return "payload"


class _Payload:
    def __reduce__(self) -> tuple[Callable[[], str], tuple[()]]:
        return _mark_unpickled, ()


def _write_states(folder: Path, **arrays: Any) -> None:
    np.savez(folder / RESET_STATES, **arrays)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:1000]), "unreadable"),
        (lambda p: p.write_bytes(b"not a zip file at all"), "unreadable"),
        (lambda p: np.save(p.with_suffix(".npy"), np.zeros((3, OBS_DIM))), "single array"),
        (
            lambda p: _write_states(p.parent, start=np.zeros((3, OBS_DIM), np.float32)),
            r"has arrays \['start'\]; expected a \.npz file with arrays 'start'",
        ),
        (
            lambda p: _write_states(
                p.parent, start=np.zeros((3, OBS_DIM)), any=np.zeros((3, OBS_DIM + 1))
            ),
            r"array 'any': expected shape \[M >= 1, 5\], got \[3, 6\]",
        ),
        (
            lambda p: _write_states(
                p.parent, start=np.zeros((0, OBS_DIM)), any=np.zeros((3, OBS_DIM))
            ),
            "array 'start': expected shape",
        ),
        (
            lambda p: _write_states(
                p.parent, start=np.full((3, OBS_DIM), np.nan), any=np.zeros((3, OBS_DIM))
            ),
            "array 'start': holds non-finite values",
        ),
        (
            lambda p: _write_states(
                p.parent,
                start=np.array([[_Payload()] * OBS_DIM], dtype=object),
                any=np.zeros((3, OBS_DIM)),
            ),
            "unreadable",
        ),
    ],
)
def test_corrupt_reset_states_are_an_error_naming_the_file(
    art: Path, damage: Callable[[Path], Any], message: str
) -> None:
    path = art / RESET_STATES
    damage(path)
    if path.with_suffix(".npy").exists():  # np.save appends .npy: put it under the npz's name
        path.with_suffix(".npy").replace(path)
    write_manifest(art, manifest_of(art))  # the hashes accept it: the content check must not
    with pytest.raises(SerializationError, match=message) as info:
        LearnedSimulator.from_artifact(art)
    assert str(path) in str(info.value)
    assert not _unpickled  # np.load never unpickles


def test_missing_reset_states(art: Path) -> None:
    (art / RESET_STATES).unlink()
    with pytest.raises(SerializationError, match=r"reset_states\.npz: missing; the manifest"):
        LearnedSimulator.from_artifact(art)
    write_manifest(art, manifest_of(art), seal=False)
    with (
        pytest.warns(UnverifiedArtifactWarning),
        pytest.raises(SerializationError, match=r"reset_states\.npz: missing; expected a \.npz"),
    ):
        LearnedSimulator.from_artifact(art)


# -- 2. corrupt or swapped graphs ----------------------------------------------------------------
def test_a_truncated_graph_is_an_error_at_load_time(art: Path) -> None:
    step = art / "step.onnx"
    step.write_bytes(step.read_bytes()[: step.stat().st_size // 3])
    write_manifest(art, manifest_of(art))
    with pytest.raises(SerializationError, match="ONNX Runtime cannot read it") as info:
        LearnedSimulator.from_artifact(art)
    assert str(step) in str(info.value) and "'step' graph" in str(info.value)


def test_a_swapped_graph_is_an_error_at_load_time_not_at_the_first_reset(art: Path) -> None:
    shutil.copy2(art / "encode.onnx", art / "step.onnx")
    write_manifest(art, manifest_of(art))
    with pytest.raises(SerializationError, match=r"step\.onnx: does not fit") as info:
        LearnedSimulator.from_artifact(art)
    message = str(info.value)
    assert "inputs: expected ['action', 'noise." in message and "found ['obs']" in message


def test_a_graph_of_another_model_is_an_error(art: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    other = LearnedSimulator(
        model=wf.create_world_model("ensemble:tiny", obs_shape=(OBS_DIM + 2,), action_dim=ACT_DIM),
        observation_space=spaces.Box(-np.inf, np.inf, (OBS_DIM + 2,), np.float64),
        action_space=spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32),
        reset_states=ResetStates(
            start=np.zeros((2, OBS_DIM + 2), np.float32), any=np.zeros((2, OBS_DIM + 2), np.float32)
        ),
    ).save_artifact(tmp_path / "other")
    shutil.copy2(other / "encode.onnx", art / "encode.onnx")
    write_manifest(art, manifest_of(art))
    with pytest.raises(SerializationError, match=r"encode\.onnx: does not fit") as info:
        LearnedSimulator.from_artifact(art)
    assert "input 'obs': expected tensor(float) [batch, 5], found tensor(float) [" in str(
        info.value
    )
