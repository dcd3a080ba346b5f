"""Finding and opening Minari datasets on this machine (``MINARI_DATASETS_PATH`` honoured)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..core.errors import WorldFluxError, unknown_name_message


class DatasetNotFoundError(WorldFluxError, FileNotFoundError):
    """A dataset id is not on this machine (and could not be downloaded)."""


def datasets_root() -> Path:
    """The folder Minari reads and writes datasets in."""
    from minari.storage.datasets_root_dir import get_dataset_path

    return Path(get_dataset_path())


def local_dataset_ids() -> list[str]:
    import minari

    return sorted(minari.list_local_datasets())


def _remote_endpoint() -> tuple[str, str, int]:
    """(remote, host, port) that a Minari download would contact."""
    remote = os.environ.get("MINARI_REMOTE", "hf://farama-minari")
    if remote.startswith("hf://"):
        url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    elif remote.startswith("gs://"):
        url = urlparse("https://storage.googleapis.com")
    else:
        url = urlparse(remote)
    port = url.port or (80 if url.scheme == "http" else 443)
    return remote, url.hostname or "", port


def _check_remote_reachable(timeout: float = 3.0) -> None:
    remote, host, port = _remote_endpoint()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise DatasetNotFoundError(
            f"download=True, but the Minari remote {remote} ({host}:{port}) cannot be reached "
            f"({exc}). Build the dataset locally instead (`worldflux collect ...`)."
        ) from None


def load_minari_dataset(dataset_id: str, *, download: bool = False) -> Any:
    """Open a local Minari dataset; with ``download=True`` fetch a missing one first.

    Raises:
        DatasetNotFoundError: the id is not local (listing the local ids and the folder
            searched), or the download remote cannot be reached (checked before any download).
    """
    import minari

    root = datasets_root()
    local = local_dataset_ids()
    if not (root / dataset_id / "data").exists():
        if not download:
            raise DatasetNotFoundError(
                unknown_name_message("Minari dataset", dataset_id, local)
                + f" Searched {root} (set MINARI_DATASETS_PATH to use another folder); "
                "build one with `worldflux collect`."
            )
        _check_remote_reachable()
        try:
            return minari.load_dataset(dataset_id, download=True)
        except ImportError as exc:
            raise DatasetNotFoundError(
                f"download=True needs Minari's remote support, which is not installed: {exc}"
            ) from None
    return minari.load_dataset(dataset_id)
