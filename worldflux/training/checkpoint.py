"""Training checkpoints: everything needed to continue a run exactly.

``<run>/checkpoints/step-000100/`` holds ``model/`` (``save_pretrained`` layout) and
``trainer_state.pt``: optimiser and scheduler state, step, RNG states (torch, numpy sampler,
Python), callback states and the trainer config. ``trainer_state.pt`` is read with
``torch.load(weights_only=True)`` (tensors and plain containers only; nothing is unpickled).
``<run>/checkpoints/latest`` names the newest complete checkpoint. Each checkpoint is written to a
temporary folder and renamed into place; ``latest`` is replaced atomically after it. A
write killed half-way leaves its ``.step-*.tmp-*`` folder, which the next start or resume of the
run removes (:func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..core.errors import SerializationError
from ..core.serialization import replace_dir_atomically

STATE_FILE = "trainer_state.pt"
LATEST = "latest"


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step-{step:07d}"


def write_checkpoint(
    run_dir: Path, step: int, model: Any, state: dict[str, Any], keep: int
) -> Path:
    """Write a checkpoint atomically, point ``latest`` at it, keep the newest ``keep``."""
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    target = checkpoint_dir(run_dir, step)
    staged = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=root))
    try:
        model.save_pretrained(staged / "model")
        with (staged / STATE_FILE).open("wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        replace_dir_atomically(staged, target)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    pointer = root / f".{LATEST}.tmp"
    pointer.write_text(target.name + "\n")
    pointer.replace(root / LATEST)
    done = sorted((p for p in root.glob("step-*") if p.is_dir()), key=lambda p: int(p.name[5:]))
    for old in done[: max(len(done) - keep, 0)]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete the ``checkpoints/.step-*.tmp-*`` folders a killed checkpoint write left behind;
    return them. Call it only when no checkpoint of this run is being written (at the start or
    resume of a run): each write stages in such a folder until it is renamed into place."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    stale = sorted(p for p in root.glob(".step-*.tmp-*") if p.is_dir() and not p.is_symlink())
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint ``latest`` names, or None when the run has none."""
    pointer = run_dir / "checkpoints" / LATEST
    if not pointer.is_file():
        return None
    path = run_dir / "checkpoints" / pointer.read_text().strip()
    if not (path / STATE_FILE).is_file():
        raise SerializationError(f"{pointer} names {path.name}, which is missing or incomplete.")
    return path


def read_state(path: Path) -> dict[str, Any]:
    try:
        state: dict[str, Any] = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise SerializationError(f"{path / STATE_FILE}: cannot be read safely ({exc}).") from None
    return state
