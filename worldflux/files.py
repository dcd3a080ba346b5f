"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

from pathlib import Path
from typing import Any


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
