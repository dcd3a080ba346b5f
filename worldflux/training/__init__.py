"""Training: one Trainer for every world-model family, callbacks, checkpoints, torchrun."""

from .callbacks import BestModel, Callback, CSVLogger, EarlyStopping, ProgressBar, TensorBoardLogger
from .config import TrainerConfig
from .distributed import DistContext
from .trainer import NonFiniteLossError, Trainer

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
