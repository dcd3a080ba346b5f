"""Compact storage of the HDF5 file Minari writes (``data/main_data.hdf5``).

Minari's HDF5 storage writes every array of every episode as a resizable, chunked dataset in the
oldest HDF5 file format. Each such array then carries a chunk index and a large object header, so
datasets of short episodes are mostly bookkeeping: an InvertedDoublePendulum replay dataset
(65k steps) took about 1.9 KB per step, Walker2d random actions (21-step episodes) 846 bytes per
step for 170 bytes of values. :func:`compact_hdf5` rewrites the file with the same groups,
arrays, dtypes, values and attributes, each array stored contiguously (it is never resized:
Minari adds episodes as new groups) in the HDF5 1.10+ object format, which h5py, and so Minari,
reads transparently. Vector values are not compressed: MuJoCo's float64 values gain only a few
per cent from gzip (8% on Walker2d medium-replay), at a cost on every read. Image frames
(``uint8`` arrays ``[T, H, W, C]``) are: game screens are mostly flat colour, and gzip stores them
losslessly in a fraction of their 12 KB (64 x 64 RGB).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any


def compact_hdf5(path: Path) -> tuple[int, int]:
    """Rewrite the HDF5 file ``path`` compactly (atomically: a sibling temporary file replaces
    it). Returns ``(bytes before, bytes after)``."""
    import h5py

    before = path.stat().st_size
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with h5py.File(path, "r") as src, h5py.File(tmp, "w", libver=("v110", "latest")) as dst:
            _copy_group(src, dst)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return before, path.stat().st_size


def _copy_group(src: Any, dst: Any) -> None:
    """Copy the h5py group ``src`` (attributes, subgroups, datasets) into ``dst``, every
    dataset contiguous."""
    import h5py

    dst.attrs.update(dict(src.attrs))
    for name, item in src.items():
        if isinstance(item, h5py.Group):
            _copy_group(item, dst.create_group(name))
        elif isinstance(item, h5py.Dataset):
            data = item[()]
            out = dst.create_dataset(name, data=data, dtype=item.dtype, **_storage(data))
            out.attrs.update(dict(item.attrs))
        else:
            raise TypeError(f"{src.name}/{name}: expected an HDF5 group or dataset, got {item!r}.")


def _storage(data: Any) -> dict[str, Any]:
    """HDF5 storage options for an array: image frames (``uint8 [T, H, W, C]``) gzip-compressed
    in chunks of up to 64 frames; anything else contiguous and uncompressed."""
    if data.dtype != "uint8" or data.ndim != 4 or len(data) == 0:
        return {}
    return {
        "compression": "gzip",
        "compression_opts": 4,
        "chunks": (min(len(data), 64), *data.shape[1:]),
    }
