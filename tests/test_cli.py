"""The installed `worldflux` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import worldflux as wf
from worldflux.cli import collect_info, main

SCRIPT = Path(sys.executable).parent / "worldflux"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def test_help_and_version() -> None:
    res = run("--help")
    assert res.returncode == 0 and "info" in res.stdout
    res = run("--version")
    assert res.stdout.strip() == f"worldflux {wf.__version__}"


def test_info_json_lists_versions_and_providers() -> None:
    res = run("info", "--json")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["worldflux"] == wf.__version__
    assert info["packages"]["torch"].startswith("2.")
    assert "CPUExecutionProvider" in info["onnxruntime_providers"]


def test_info_lists_registered_families(capsys) -> None:  # type: ignore[no-untyped-def]
    assert "toy" in collect_info()["families"]  # registered by the tests' conftest
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "toy (aliases: toy-latent): presets small, tiny" in out
    assert "ONNX Runtime providers:" in out


def test_no_command_prints_help() -> None:
    res = run()
    assert res.returncode == 2 and "usage: worldflux" in res.stdout


def test_every_command_help_shows_its_defaults() -> None:
    from worldflux.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    train, offline, collect = (commands[c].format_help() for c in ("train", "offline", "collect"))
    assert "TrainerConfig.seq_len (default: 64)" in train
    assert "(default: 0.1)" in train  # --validation-fraction
    assert "real-env evaluation episodes (default: 10)" in offline
    assert "episodes for reference returns (default: 20)" in collect
    assert "(default: None)" not in train + offline + collect
