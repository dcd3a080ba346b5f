"""On-disk cache of `EpisodeStore` arrays, so a dataset is decoded from HDF5 only once.

Minari's HDF5 files keep every episode in its own group; a dataset of many short episodes (a
random policy's) takes tens of seconds to decode. The decoded arrays are saved as ``.npy`` files
(read with ``allow_pickle=False``) under ``$WORLDFLUX_CACHE`` (default ``~/.cache/worldflux``),
keyed by the dataset's path, size and modification time, so a changed dataset is decoded again.
Writes are atomic (temporary folder renamed into place).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .episodes import EpisodeStore
from .spaces import ActionLayout, ObservationLayout

CACHE_VERSION = 1
_ARRAYS = ("obs", "actions", "rewards", "terminations", "truncations", "lengths", "episode_ids")


def cache_root() -> Path:
    return Path(os.environ.get("WORLDFLUX_CACHE", Path.home() / ".cache" / "worldflux"))


def _key(data_dir: Path) -> str:
    parts = [str(CACHE_VERSION), str(data_dir.resolve())]
    for f in sorted(data_dir.rglob("*")):
        if f.is_file():
            st = f.stat()
            parts += [f.name, str(st.st_size), str(st.st_mtime_ns)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def _read(folder: Path) -> EpisodeStore | None:
    try:
        meta = json.loads((folder / "layout.json").read_text())
        arrays = {name: np.load(folder / f"{name}.npy", allow_pickle=False) for name in _ARRAYS}
        return EpisodeStore(
            **arrays,
            obs_layout=ObservationLayout(meta["obs_kind"], tuple(meta["obs_shape"])),
            action_layout=ActionLayout(meta["action_kind"], int(meta["action_dim"])),
        )
    except (OSError, ValueError, KeyError):
        return None  # missing or unreadable cache: decode the dataset again


def _write(folder: Path, store: EpisodeStore) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        for name in _ARRAYS:
            np.save(staged / f"{name}.npy", getattr(store, name), allow_pickle=False)
        (staged / "layout.json").write_text(
            json.dumps(
                {
                    "obs_kind": store.obs_layout.kind,
                    "obs_shape": list(store.obs_layout.shape),
                    "action_kind": store.action_layout.kind,
                    "action_dim": store.action_layout.dim,
                }
            )
        )
        if folder.exists():
            shutil.rmtree(folder)
        os.rename(staged, folder)
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def load_or_build(data_dir: Path, build: Callable[[], EpisodeStore]) -> EpisodeStore:
    """The store of the dataset in ``data_dir``: from the cache when it is current, else built
    with ``build()`` and cached (a cache that cannot be written is skipped, not an error)."""
    folder = cache_root() / "episodes" / _key(data_dir)
    cached = _read(folder)
    if cached is not None:
        return cached
    store = build()
    try:
        _write(folder, store)
    except OSError as exc:  # read-only or full cache folder: still usable, just slower next time
        warnings.warn(
            f"could not cache the decoded dataset in {folder} ({exc}); set WORLDFLUX_CACHE to a "
            "writable folder to make later loads faster.",
            stacklevel=3,
        )
    return store
