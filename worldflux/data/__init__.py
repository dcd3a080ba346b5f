"""Data layer: Minari datasets as `BatchProvider`s, and dataset collection.

Without PyTorch the spaces, episode store and Minari I/O still import; the batch provider does not.
"""

from typing import Any

from .._optional import missing_attribute, torch_available
from .episodes import EpisodeStore
from .minari_io import DatasetNotFoundError, datasets_root, load_minari_dataset
from .spaces import ActionLayout, ObservationLayout, UnsupportedSpaceError

if torch_available():
    from .provider import MinariBatchProvider, NormalizationStats

__all__ = [
    "ActionLayout",
    "DatasetNotFoundError",
    "EpisodeStore",
    "MinariBatchProvider",
    "NormalizationStats",
    "ObservationLayout",
    "UnsupportedSpaceError",
    "datasets_root",
    "load_minari_dataset",
]


_TORCH_ONLY = frozenset({"MinariBatchProvider", "NormalizationStats"})
if not torch_available():  # star-imports and tools that walk __all__ see what exists
    __all__ = sorted(set(__all__) - _TORCH_ONLY)


def __getattr__(name: str) -> Any:
    raise missing_attribute(__name__, _TORCH_ONLY, name)
