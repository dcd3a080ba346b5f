"""Evaluation of learned simulators: open-loop fidelity against baselines."""

from .fidelity import DEFAULT_HORIZONS, FidelityReport, fidelity_report

__all__ = ["DEFAULT_HORIZONS", "FidelityReport", "fidelity_report"]
