"""Training: one Trainer for every world-model family, callbacks, checkpoints, torchrun.

Only :class:`TrainerConfig` is imported with the package (``worldflux train --help`` shows its
defaults without loading torch); the rest is imported on first use.
"""

from typing import TYPE_CHECKING, Any

from .._optional import lazy_attribute
from .config import TrainerConfig

if TYPE_CHECKING:  # the lazy names, for type checkers and IDEs
    from .callbacks import (
        BestModel,
        Callback,
        CSVLogger,
        EarlyStopping,
        ProgressBar,
        TensorBoardLogger,
    )
    from .distributed import DistContext
    from .trainer import NonFiniteLossError, Trainer

_TORCH_ONLY_SOURCES = {
    **dict.fromkeys(
        [
            "BestModel",
            "CSVLogger",
            "Callback",
            "EarlyStopping",
            "ProgressBar",
            "TensorBoardLogger",
        ],
        ".callbacks",
    ),
    "DistContext": ".distributed",
    "NonFiniteLossError": ".trainer",
    "Trainer": ".trainer",
}

__all__ = [
    "BestModel",
    "CSVLogger",
    "Callback",
    "DistContext",
    "EarlyStopping",
    "NonFiniteLossError",
    "ProgressBar",
    "TensorBoardLogger",
    "Trainer",
    "TrainerConfig",
]


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, _TORCH_ONLY_SOURCES, name)
