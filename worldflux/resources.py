"""Where the project's data files are: env cards (``envs/``) and built artifacts and behaviour
policies (``exports/``). A built wheel carries them as ``worldflux/_data/<name>``; a source
checkout or editable install has them at the repository root."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """``worldflux/_data/<name>`` when installed from a wheel, else ``<repo>/<name>``."""
    packaged = _PACKAGE / "_data" / name
    return packaged if packaged.is_dir() else _PACKAGE.parent / name
