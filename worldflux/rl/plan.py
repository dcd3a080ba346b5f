"""`worldflux plan SOURCE`: model predictive control with a learned model, scored on the real env.

SOURCE is a training run, an artifact or an env card (as for ``worldflux evaluate``); its model
filters the real observations and plans every action (:class:`~worldflux.planners.MPCPolicy`):

* ``mppi`` / ``cem``: :class:`~worldflux.planners.MPPIPlanner` / :class:`~worldflux.planners.
  CEMPlanner` over the model's predicted rewards and continues, within the real env's action
  bounds, with ``uncertainty_penalty`` times the model's uncertainty subtracted from each reward
  (0 for models without one). A model with a policy prior and a value (``tdmpc2``) plans as
  TD-MPC2 does instead (:func:`~worldflux.planners.tdmpc2_planner`: value bootstrap, prior
  samples), within [-1, 1]: by default as a local search around the prior's mode
  (``search="local"``, :data:`~worldflux.planners.OFFLINE_PLANNING`, for models trained offline,
  as every model here is), or TD-MPC2's open search (``search="open"``);
* ``prior``: the policy prior alone (:class:`~worldflux.planners.PolicyPriorPlanner`).

With ``goal`` (``--goal``) ``mppi`` / ``cem`` plan towards each episode's goal observation
instead of for reward (:meth:`~worldflux.planners.MPCPolicy.set_goal`): the env must give one
(``env.unwrapped.goal_observation()``, as ``WorldFlux/TwoRooms-v0`` does), and the result adds
the success rate, the fraction of episodes that ended by termination (goal-reaching envs end an
episode at the goal).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import ConfigError
from .evaluate import Episodes, predictor_policy, real_env_episodes

PLANNERS = ("mppi", "cem", "prior")


def planned_episodes(
    model: Any,
    planner: Any,
    env_id: str,
    action_space: Any,
    episodes: int,
    seed: int,
    *,
    goal: bool = False,
) -> Episodes:
    """``episodes`` real episodes of ``env_id`` (seeds ``seed``, ``seed + 1``, ...) in which
    ``planner`` plans every action from the state ``model`` filters
    (:class:`~worldflux.planners.MPCPolicy`, seeded with ``seed``); with ``goal``, towards each
    env's ``goal_observation()`` after the reset."""
    from ..planners import MPCPolicy

    agent = MPCPolicy(model, planner, action_space, seed=seed)

    def give_goals(venv: Any) -> None:
        try:
            goals = venv.call("goal_observation")
        except AttributeError:
            raise ConfigError(
                f"goal: expected an env with goal_observation() (e.g. WorldFlux/TwoRooms-v0), "
                f"{env_id} has none."
            ) from None
        agent.set_goal(np.stack(goals))

    return real_env_episodes(
        env_id,
        predictor_policy(agent),
        episodes,
        seed,
        after_reset=give_goals if goal else None,
    )


def plan_eval(
    source: str | Path,
    *,
    planner: str = "mppi",
    env_id: str | None = None,
    episodes: int = 10,
    seed: int = 0,
    horizon: int | None = None,
    num_samples: int | None = None,
    iterations: int | None = None,
    uncertainty_penalty: float = 1.0,
    search: str = "local",
    goal: bool = False,
) -> dict[str, Any]:
    """Score planning with ``source``'s model on ``episodes`` real episodes (seeds ``seed``,
    ``seed + 1``, ...). ``horizon``, ``num_samples``, ``iterations`` override the planner's
    defaults (``mppi``/``cem``: 5, 512, 3; TD-MPC2: its own, see ``TDMPC2_PLANNING``); ``goal``:
    see the module docstring."""
    import gymnasium as gym

    from ..dream.make import load_simulator
    from ..planners import (
        OFFLINE_PLANNING,
        CEMPlanner,
        MPPIPlanner,
        PolicyPriorPlanner,
        tdmpc2_planner,
    )
    from ..planners.prior import PriorModel

    if planner not in PLANNERS:
        raise ConfigError(f"planner: expected one of {list(PLANNERS)}, got {planner!r}.")
    if search not in ("local", "open"):
        raise ConfigError(f"search: expected 'local' or 'open', got {search!r}.")
    sim = load_simulator(source)
    env_id = env_id or sim.source_env
    if env_id is None:
        raise ConfigError(
            f"{source}: the model records no real environment; give one with --env ENV_ID."
        )
    model = sim.torch_model().eval()
    probe = gym.make(env_id)
    space = probe.action_space
    probe.close()
    if not isinstance(space, gym.spaces.Box):
        raise ConfigError(f"{env_id}: planning needs a Box action space, got {space!r}.")
    overrides = {
        k: v
        for k, v in (("horizon", horizon), ("num_samples", num_samples), ("iterations", iterations))
        if v is not None
    }
    with_prior = isinstance(model, PriorModel)
    if goal and (planner == "prior" or with_prior):
        raise ConfigError(
            f"goal: expected planner mppi or cem over a model without a value (a goal replaces "
            f"the rewards a value sums), got planner {planner!r} with {model.model_type}."
        )
    if planner == "prior":
        if not with_prior:
            raise ConfigError(
                f"planner 'prior': {model.model_type} has no policy prior (tdmpc2 has one); "
                "use mppi or cem."
            )
        chosen: Any = PolicyPriorPlanner(model)
        settings: dict[str, Any] = {}
    elif with_prior and planner == "mppi":
        settings = {**(OFFLINE_PLANNING if search == "local" else {}), **overrides}
        chosen = tdmpc2_planner(model, seed=seed, **settings)
    else:
        penalty = uncertainty_penalty if _has_uncertainty(model) else 0.0
        settings = {
            "horizon": 5,
            "num_samples": 512,
            "num_elites": 64,
            "iterations": 3,
            **overrides,
            "uncertainty_penalty": penalty,
        }
        settings["num_elites"] = min(settings["num_elites"], settings["num_samples"])
        kind = MPPIPlanner if planner == "mppi" else CEMPlanner
        chosen = kind(model, low=space.low, high=space.high, seed=seed, **settings)
    started = time.perf_counter()
    real = planned_episodes(model, chosen, env_id, space, episodes, seed, goal=goal)
    seconds = time.perf_counter() - started
    out = {
        "source": str(source),
        "model": model.model_type,
        "env": env_id,
        "planner": planner + (" (TD-MPC2)" if with_prior and planner == "mppi" else ""),
        "settings": settings,
        "real": real.to_dict(),
        "seconds": round(seconds, 1),
    }
    if goal:
        assert real.terminated is not None
        out["goal"] = True
        out["success_rate"] = float(real.terminated.mean())
    return out


def _has_uncertainty(model: Any) -> bool:
    import torch

    with torch.no_grad():
        state = model.initial_state(1)
        action = torch.zeros(1, int(model.config.action_dim), device=model.device)
        return (
            model.decode(model.transition(state, action, deterministic=True)).uncertainty
            is not None
        )
