"""Data layer: Minari datasets as `BatchProvider`s, and dataset collection."""

from .episodes import EpisodeStore
from .minari_io import DatasetNotFoundError, datasets_root, load_minari_dataset
from .provider import MinariBatchProvider, NormalizationStats
from .spaces import ActionLayout, ObservationLayout, UnsupportedSpaceError

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
