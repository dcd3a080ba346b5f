"""`worldflux export SOURCE`: a training run, an artifact or an env card -> a self-contained
artifact folder with ONNX graphs (see :mod:`worldflux.dream.simulator` for the layout)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError
from ..dream.cards import find_card
from ..dream.make import load_simulator
from ..dream.simulator import MANIFEST

#: report files carried from the source folder into the artifact
REPORT_FILES = ("fidelity.md", "fidelity.json", "fidelity.png")


def _source_folder(source: str | Path) -> tuple[Path, Path]:
    """(folder the simulator and its reports come from, default output folder)."""
    path = Path(source)
    if path.is_dir():
        if (path / MANIFEST).is_file():
            return path, path
        if (path / "run.json").is_file():
            return path, path / "artifact"
        raise ConfigError(
            f"{path}: expected a training run (run.json) or an artifact ({MANIFEST}) folder."
        )
    card = find_card(str(source))
    return card.artifact_dir, card.artifact_dir


def export_artifact(source: str | Path, out: str | Path | None = None) -> dict[str, Any]:
    """Write the artifact of ``source`` (run folder, artifact folder, card name or id) with its
    ONNX graphs to ``out`` (default: the artifact itself, a card's artifact, or ``RUN/artifact``),
    replacing it atomically. Returns the written files and their sizes in bytes."""
    folder, default_out = _source_folder(source)
    target = Path(out) if out is not None else default_out
    sim = load_simulator(source)
    sim.torch_model()  # read before the folder may be replaced
    with tempfile.TemporaryDirectory() as tmp:
        reports = []
        for name in REPORT_FILES:
            if (folder / name).is_file():
                reports.append(Path(shutil.copy2(folder / name, Path(tmp) / name)))
        written = sim.save_artifact(target, extra_files=tuple(reports))
    files = sorted(p for p in written.rglob("*") if p.is_file())
    return {
        "artifact": str(written),
        "files": {str(p.relative_to(written)): p.stat().st_size for p in files},
    }
