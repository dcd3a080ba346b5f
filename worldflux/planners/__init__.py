"""Planners over any world-model family: sampling-based model predictive control.

* :class:`CEMPlanner` (cross-entropy method) and :class:`MPPIPlanner` (model predictive path
  integral) implement the :class:`~worldflux.core.planner.Planner` protocol
  (``plan(state) -> PlannerOutput``) for every :class:`~worldflux.core.model.WorldModel`: the B
  states of a batch are repeated to ``B x M`` candidates, rolled out with one ``transition`` and
  one ``decode`` per horizon step, and scored by their predicted discounted return
  (:mod:`.scoring`).
* With a goal (``plan(state, goal=goal_state)``, :meth:`MPCPolicy.set_goal`) the planners
  minimise the distance to the goal in the model's latent features instead of maximising reward.
* An exported model plans on ONNX Runtime through :class:`~worldflux.planners.onnx.OnnxStepper`
  (a :class:`Stepper`: the model's step graph in place of ``transition`` + ``decode``).
* :class:`MPCPolicy` filters real observations with a model and plans from the filtered state,
  with Stable-Baselines3's ``predict`` signature.
* :class:`PolicyPriorPlanner` acts with a family's policy prior without search, and
  :func:`tdmpc2_planner` builds MPPI as TD-MPC2 plans (value bootstrap, prior samples).

This package imports torch (``import worldflux`` does not import it).
"""

from .base import ACTION_STD_KEY, PLAN_KEY, VALUE_KEY, SamplingPlanner
from .cem import CEMPlanner
from .mpc import MPCPolicy, MPCState
from .mppi import MPPIPlanner
from .onnx import OnnxStepper
from .prior import OFFLINE_PLANNING, TDMPC2_PLANNING, PolicyPriorPlanner, tdmpc2_planner
from .scoring import ImaginedStep, ModelStepper, ReturnScorer, Stepper

__all__ = [
    "ACTION_STD_KEY",
    "OFFLINE_PLANNING",
    "PLAN_KEY",
    "TDMPC2_PLANNING",
    "VALUE_KEY",
    "CEMPlanner",
    "ImaginedStep",
    "MPCPolicy",
    "MPCState",
    "MPPIPlanner",
    "ModelStepper",
    "OnnxStepper",
    "PolicyPriorPlanner",
    "ReturnScorer",
    "SamplingPlanner",
    "Stepper",
    "tdmpc2_planner",
]
