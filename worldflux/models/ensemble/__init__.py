"""Probabilistic MLP ensembles (MBPO-style): the ``ensemble`` family (alias ``mbpo``)."""

from .model import (
    TERMINATION_FUNCTIONS,
    EnsembleConfig,
    EnsembleModel,
    batch_statistics,
    hopper_termination,
    walker2d_termination,
)

__all__ = [
    "TERMINATION_FUNCTIONS",
    "EnsembleConfig",
    "EnsembleModel",
    "batch_statistics",
    "hopper_termination",
    "walker2d_termination",
]
