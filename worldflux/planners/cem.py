"""The cross-entropy method (CEM) over action sequences, as in PlaNet's planner."""

from __future__ import annotations

import torch

from .base import SamplingPlanner


class CEMPlanner(SamplingPlanner):
    """Cross-entropy method: each round keeps the ``num_elites`` best-scoring candidates of
    every state and refits the Gaussian to them, weighted equally (their mean and population
    standard deviation per step and action dimension). The action is the first step of the final
    mean; ``extras["wf.planner.value"]`` ``[B]`` is the mean score of the final round's elites.

    See :class:`~worldflux.planners.base.SamplingPlanner` for the search loop, warm starts,
    prior mixing and randomness, and :mod:`worldflux.planners.scoring` for the score.

    Args:
        model: any :class:`~worldflux.core.model.WorldModel`, or a
            :class:`~worldflux.planners.scoring.Stepper` (e.g. an exported model on ONNX Runtime,
            :class:`~worldflux.planners.onnx.OnnxStepper`).
        horizon: H >= 1 imagined steps.
        num_samples: N >= 1 Gaussian candidates per state and round.
        num_elites: 1 <= K <= ``num_samples + num_prior_samples`` candidates kept per round.
        iterations: rounds of sampling and refitting (>= 1).
        low, high: action bounds (a float for every dimension, or ``[A]`` values; low < high);
            candidates are clamped to them.
        init_std: initial standard deviation, as a fraction of half the action range (> 0).
        min_std: floor of the refitted standard deviation, same units (0 <= min_std <= init_std).
        discount: per-step discount in (0, 1].
        uncertainty_penalty: weight >= 0 of the model's uncertainty subtracted from rewards.
        value_fn: optional terminal value ``value_fn(state) -> [R]`` of the imagined last states.
        prior_fn: optional policy prior ``prior_fn(state) -> [B', A]``; needs
            ``num_prior_samples``.
        num_prior_samples: P >= 0 prior candidates per state (>= 1 exactly when ``prior_fn``).
        sample_transitions: sample stochastic transitions (noise from the planner's generator)
            instead of deterministic ones.
        seed: seed of the planner's generator (>= 0).
    """

    def _weights(self, scores: torch.Tensor) -> torch.Tensor:
        return torch.full_like(scores, 1.0 / scores.shape[1])
