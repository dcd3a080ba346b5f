"""Model predictive path integral control (MPPI) over action sequences, in TD-MPC2's form."""

from __future__ import annotations

from typing import Any

import torch

from ..core.model import WorldModel
from .base import SamplingPlanner, check_float
from .scoring import Stepper


class MPPIPlanner(SamplingPlanner):
    """MPPI (Williams et al.) over the elites, as TD-MPC2 plans: each round keeps the
    ``num_elites`` best-scoring candidates of every state and weights elite ``i`` by

    ``w_i = exp((score_i - max_j score_j) / temperature) / sum_k exp((score_k - max_j score_j)
    / temperature)``

    then refits the Gaussian to the weighted elites: mean ``sum_i w_i a_i`` and standard
    deviation ``sqrt(sum_i w_i (a_i - mean)^2)`` per step and action dimension. The action is the
    first step of the final weighted mean; ``extras["wf.planner.value"]`` ``[B]`` is the weighted
    mean score ``sum_i w_i score_i`` of the final round's elites.

    Temperatures are in units of the score (the summed, discounted reward): a small one
    approaches the best candidate (and can collapse the search onto it early), a large one the
    equal weighting of :class:`~worldflux.planners.CEMPlanner`. ``num_elites = num_samples``
    weights every candidate (the original MPPI average, with a refitted standard deviation).

    See :class:`~worldflux.planners.base.SamplingPlanner` for the search loop, warm starts,
    prior mixing and randomness, and :mod:`worldflux.planners.scoring` for the score.

    Args:
        model: any :class:`~worldflux.core.model.WorldModel`, or a
            :class:`~worldflux.planners.scoring.Stepper` (e.g. an exported model on ONNX Runtime,
            :class:`~worldflux.planners.onnx.OnnxStepper`).
        temperature: > 0, see above.
        settings: the search settings of :class:`~worldflux.planners.CEMPlanner` (``horizon``,
            ``num_samples``, ``num_elites`` (here: candidates weighted per round), ``iterations``,
            ``low``, ``high``, ``init_std``, ``min_std``, ``discount``, ``uncertainty_penalty``,
            ``value_fn``, ``prior_fn``, ``num_prior_samples``, ``sample_transitions``, ``seed``),
            with the same defaults.
    """

    def __init__(
        self, model: WorldModel | Stepper, *, temperature: float = 0.5, **settings: Any
    ) -> None:
        super().__init__(model, **settings)
        self.temperature = check_float(
            "MPPIPlanner", "temperature", temperature, low=0.0, low_open=True
        )

    def _weights(self, scores: torch.Tensor) -> torch.Tensor:
        return torch.softmax((scores - scores[:, :1]) / self.temperature, dim=1)
