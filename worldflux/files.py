"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .core.errors import SerializationError


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def save_figure_atomic(fig: Any, path: Path, dpi: int = 100) -> None:
    """Save a matplotlib figure to ``path`` through a temporary file beside it."""
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=dpi)
    tmp.replace(path)


def refuse_foreign_folder(target: Path, marker: str, what: str) -> None:
    """Raise unless ``target`` is missing, empty, or holds ``marker`` (a folder this library
    wrote): replacing a folder deletes what it held, so a mistyped path must never do that."""
    if target.exists() and not target.is_dir():
        raise SerializationError(f"{target}: exists and is not a directory.")
    if target.is_dir() and any(target.iterdir()) and not (target / marker).is_file():
        raise SerializationError(
            f"{target}: exists, is not empty and is not a {what} (no {marker}); refusing to "
            "replace it. Choose another folder."
        )


def sha256_file(path: Path) -> str:
    """Hex sha256 of the file at ``path`` (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; :class:`SerializationError` naming the file when it is not
    valid JSON or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SerializationError(f"{path}: not valid JSON ({exc}).") from None
    if not isinstance(data, dict):
        raise SerializationError(f"{path}: expected a JSON object, got {type(data).__name__}.")
    return data
