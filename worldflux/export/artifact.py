"""`worldflux export SOURCE`: a training run, an artifact or an env card -> a self-contained
artifact folder with ONNX graphs (see :mod:`worldflux.dream.simulator` for the layout), and the
re-hashing of an artifact's files (:func:`rehash_artifact`)::

    python -m worldflux.export rehash FOLDER...   # record the hashes of the files now there
    python -m worldflux.export verify FOLDER...   # load and check, as gym.make would
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError
from ..dream.cards import find_card
from ..dream.make import load_simulator
from ..dream.manifest import (
    INTEGRITY,
    UnverifiedArtifactWarning,
    manifest_text,
    read_manifest,
    sealed,
)
from ..dream.simulator import MANIFEST, LearnedSimulator
from ..files import write_text_atomic

#: report files carried from the source folder into the artifact
REPORT_FILES = (
    "fidelity.md",
    "fidelity.json",
    "fidelity.png",
    "shifted.md",
    "shifted.json",
    "shifted.png",
)


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


def rehash_artifact(folder: str | Path) -> dict[str, Any]:
    """Record in ``folder``'s manifest the sha256 and size of every file now in the folder and
    of the manifest's content (its ``"integrity"`` section), replacing the manifest atomically.

    For artifacts written before hashes were recorded, or after an intended change to a file.
    The files are trusted as they are, so the artifact is first checked in every other way (the
    manifest's structure, the reset states, the graphs' inputs and outputs); if that fails,
    nothing is written. Returns the new integrity section.
    """
    root = Path(folder)
    manifest = sealed(root, read_manifest(root))
    LearnedSimulator.from_manifest(root, manifest)
    write_text_atomic(root / MANIFEST, manifest_text(manifest))
    section: dict[str, Any] = manifest[INTEGRITY]
    return section


def verify_artifact(folder: str | Path) -> LearnedSimulator:
    """Load ``folder`` as :func:`~worldflux.dream.make.make_dream_env` does, with a missing
    integrity section an error rather than a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnverifiedArtifactWarning)
        return LearnedSimulator.from_artifact(folder)
