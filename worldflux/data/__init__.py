"""Data layer: Minari datasets as `BatchProvider`s, and dataset collection.

Without PyTorch the spaces, episode store and Minari I/O still import; the batch provider does not.
"""

from typing import TYPE_CHECKING, Any

from .._optional import lazy_attribute, torch_available
from .episodes import EpisodeStore
from .minari_io import DatasetNotFoundError, datasets_root, load_minari_dataset
from .spaces import ActionLayout, ObservationLayout, UnsupportedSpaceError

if TYPE_CHECKING:  # the lazy names, for type checkers and IDEs
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


#: the torch-only names and their module (imported on first use: importing the package does not
#: load torch)
_TORCH_ONLY_SOURCES = {"MinariBatchProvider": ".provider", "NormalizationStats": ".provider"}
if not torch_available():  # star-imports and tools that walk __all__ see what exists
    __all__ = sorted(set(__all__) - set(_TORCH_ONLY_SOURCES))


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, _TORCH_ONLY_SOURCES, name)
