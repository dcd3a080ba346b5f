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
            f"the Minari remote {remote} ({host}:{port}) cannot be reached ({exc})"
        ) from None


def _recipe_hint(dataset_id: str) -> str:
    """How to make ``dataset_id`` here: its recipe, when one of the project's recipes builds it."""
    from .recipes import load_recipes

    for name, table in load_recipes()["dataset"].items():
        if table.get("dataset_id") == dataset_id:
            return f"build it with `worldflux collect --recipe {name}`"
    return "build one with `worldflux collect`"


def load_minari_dataset(dataset_id: str, *, download: bool | None = None) -> Any:
    """Open a local Minari dataset, fetching a missing one from Minari's remote first.

    ``download``: None (default) tries the remote for a missing id unless it is one of the
    project's own (``worldflux/...``, never hosted); True always tries; False never does.

    Raises:
        DatasetNotFoundError: the id is not local and could not be downloaded; the message lists
            the local ids, the folder searched, why the download failed (the remote's
            reachability is checked first, in seconds) and how to build or place the dataset.
    """
    import minari

    root = datasets_root()
    if (root / dataset_id / "data").exists():
        return minari.load_dataset(dataset_id)
    try_remote = download if download is not None else not dataset_id.startswith("worldflux/")
    missing = (
        unknown_name_message("Minari dataset", dataset_id, local_dataset_ids())
        + f" Searched {root} (set MINARI_DATASETS_PATH to use another folder)"
    )
    how = f"{_recipe_hint(dataset_id)}, or place a Minari dataset folder at {root / dataset_id}."
    if not try_remote:
        raise DatasetNotFoundError(f"{missing}; {how}")
    try:
        _check_remote_reachable()
        return minari.load_dataset(dataset_id, download=True)
    except DatasetNotFoundError as exc:
        reason = str(exc)
    except ImportError as exc:
        reason = f"Minari's remote support is not installed ({exc})"
    except Exception as exc:  # the remote's own errors: unknown id, HTTP errors, ...
        reason = f"Minari's download failed ({type(exc).__name__}: {exc})"
    raise DatasetNotFoundError(f"{missing}; downloading it failed: {reason}. Instead, {how}")
