"""Training checkpoints: everything needed to continue a run exactly.

``<run>/checkpoints/step-000100/`` holds ``model/`` (``save_pretrained`` layout) and
``trainer_state.pt``: optimiser and scheduler state, step, RNG states (torch, numpy sampler,
Python), callback states and the trainer config. ``trainer_state.pt`` is read with
``torch.load(weights_only=True)`` (tensors and plain containers only; nothing is unpickled).
``<run>/checkpoints/latest`` names the newest complete checkpoint. Each checkpoint is written to a
temporary folder and renamed into place; ``latest`` is replaced atomically after it. A
write killed half-way leaves its temporary behind: a ``.step-*.tmp-*`` folder here, a
``.model.tmp-*`` or ``.best.tmp-*`` folder in the run folder (``save_pretrained`` stages beside
its target), or a temporary file of an atomic file write. The next start or resume of the run
removes them (:func:`remove_stale_temporaries`).
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


#: Temporary folders a run's writes stage in (``tempfile.mkdtemp(prefix=".<target>.tmp-")``
#: beside the target): checkpoints, and ``save_pretrained`` of ``model/`` and ``best/``.
#: ``.<target>.old-*`` folders are not among them: a replace killed half-way can leave the only
#: copy of the previous model there.
TEMP_DIR_PATTERN = ".*.tmp-*"
#: Temporary files of the run's atomic file writes, by folder (relative to the run folder):
#: ``run.json``, ``metrics.json`` and the fidelity report (:mod:`worldflux.files`),
#: ``metrics.csv`` and the Trainer's ``metrics.json`` (``metrics.tmp``), and ``latest``.
TEMP_FILES: dict[str, tuple[str, ...]] = {
    ".": (
        ".run.json.tmp",
        ".metrics.json.tmp",
        "metrics.tmp",
        ".fidelity.json.tmp",
        ".fidelity.md.tmp",
        ".fidelity.tmp.png",
    ),
    "checkpoints": (f".{LATEST}.tmp",),
}


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete the temporaries killed writes left in ``run_dir``; return them.

    Folders matching :data:`TEMP_DIR_PATTERN` in the run folder and in ``checkpoints/``
    (``.step-*.tmp-*``, ``.model.tmp-*``, ``.best.tmp-*``), and the files of :data:`TEMP_FILES`.
    Call it only when nothing of this run is being written (at the start or resume of a run):
    each write stages in such a temporary until it is renamed into place. Links are left alone.
    """
    stale: list[Path] = []
    for folder in (run_dir, run_dir / "checkpoints"):
        if folder.is_dir():
            found = folder.glob(TEMP_DIR_PATTERN)
            stale += sorted(p for p in found if p.is_dir() and not p.is_symlink())
    for where, names in TEMP_FILES.items():
        files = (run_dir / where / name for name in names)
        stale += [p for p in files if p.is_file() and not p.is_symlink()]
    for path in stale:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
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
