"""The repository a new user clones: no stray tracked files, docs that name what exists."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from worldflux.cli import build_parser
from worldflux.dream.cards import load_cards

ROOT = Path(__file__).resolve().parents[1]


def git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.skipif(
    shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout"
)
def test_no_tracked_file_is_one_the_repository_ignores() -> None:
    """Run logs (e.g. MuJoCo's MUJOCO_LOG.TXT), caches and datasets never get committed."""
    assert git("ls-files", "--cached", "--ignored", "--exclude-standard").split() == []


def test_exports_readme_names_the_files_of_every_shipped_artifact() -> None:
    text = (ROOT / "exports" / "README.md").read_text()
    table = [line for line in text.splitlines() if line.startswith("| `")]
    named: set[str] = set()
    for line in table:
        for cell in re.findall(r"`([^`]+)`", line.split("|")[1]):
            stem, _, exts = cell.partition(".{")
            if exts:  # fidelity.{md,json,png}
                named |= {f"{stem}.{ext}" for ext in exts.rstrip("}").split(",")}
            else:
                named.add(cell.rstrip("/"))
    built = [card for card in load_cards().values() if card.built]
    assert built, "no shipped artifact"
    for card in built:
        present = {p.name for p in card.artifact_dir.iterdir()}
        expected = named if card.onnx else named - {"encode.onnx", "step.onnx", "replace.onnx"}
        assert present == expected, (card.artifact_dir, present ^ expected)


def test_readme_commands_exist() -> None:
    """Every `worldflux COMMAND` and `make TARGET` the README shows is a real command or target."""
    readme = (ROOT / "README.md").read_text()
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    commands = set(sub.choices)  # type: ignore[arg-type]
    used = set(re.findall(r"(?<!import )(?<![\w.-])worldflux ([a-z][a-z-]+)", readme))
    assert used - commands == set(), f"README names unknown commands: {used - commands}"
    targets = set(re.findall(r"^([a-z-]+):", (ROOT / "Makefile").read_text(), re.M))
    made = set(re.findall(r"(?:^|`)make ([a-z-]+)", readme, re.M))
    assert made - targets == set(), f"README names unknown make targets: {made - targets}"
