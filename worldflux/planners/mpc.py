"""`MPCPolicy`: model predictive control on a real environment, with Stable-Baselines3's
``predict`` signature (so ``stable_baselines3.common.evaluation.evaluate_policy`` scores it).

Every call filters the real observations with the world model and plans from the filtered state:

* the first observation of an episode (``episode_start``, or every env when ``state`` is None)
  is ``model.encode(obs)``;
* afterwards ``model.update(previous state, action taken, obs)``: the model's posterior step
  after the action this policy returned last, seeing the observation that followed it.

With :meth:`MPCPolicy.set_goal` (goal observations, e.g. a goal-reaching env's goal image) the
planner plans towards the encoded goal in the model's latent features instead of for predicted
reward, as goal-conditioned latent planners (PLDM, DINO-WM) do.

Observations go to the model raw, as the environment gives them (``[n_envs, *O]``; uint8 stays
uint8, everything else becomes float32): the families normalise internally with the statistics
of their training data (``set_data_statistics``, saved with the weights), so do not wrap the env
in an observation normaliser the model was not trained with.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from ..core.errors import ConfigError, ContractError
from ..core.model import WorldModel
from ..core.planner import Planner
from ..core.shapes import check_shape
from ..core.state import State
from .base import ACTION_STD_KEY, check_int


@dataclass
class MPCState:
    """What :meth:`MPCPolicy.predict` returns as its ``state`` and takes back next call.

    Attributes:
        latent: the model's filtered state of every env ``[n_envs, ...]``.
        action: ``[n_envs, A]`` float32 the actions returned with it (those the envs are stepped
            with), on the model's device.
    """

    latent: State
    action: torch.Tensor


class MPCPolicy:
    """Plans every action with ``planner`` from the state ``model`` filters from the real
    observations (see the module docstring).

    Args:
        model: the world model that filters observations (usually the planner's model).
        planner: any :class:`~worldflux.core.planner.Planner`. A planner with a
            ``reset(mask=None)`` method (:class:`~worldflux.planners.CEMPlanner`,
            :class:`~worldflux.planners.MPPIPlanner`) is reset fully when a new run starts
            (``state`` None) and for the envs whose episode starts otherwise.
        action_space: the env's ``gymnasium.spaces.Box`` of shape ``(A,)`` with the model's A;
            actions are returned in its dtype, and a planner's ``low`` / ``high`` bounds (where
            it has them) must lie within it.
        seed: seed (>= 0) of the generator of non-deterministic actions (``deterministic=False``),
            re-seeded when a new run starts.

    The model runs as it is, under ``torch.no_grad()`` (call ``model.eval()`` first where the
    family's layers care).
    """

    def __init__(
        self,
        model: WorldModel,
        planner: Planner,
        action_space: gym.spaces.Space[Any],
        *,
        seed: int = 0,
    ) -> None:
        if not isinstance(model, WorldModel):
            raise ConfigError(
                f"MPCPolicy.model: expected a WorldModel, got {type(model).__name__}."
            )
        if not isinstance(planner, Planner):
            raise ConfigError(
                f"MPCPolicy.planner: expected a Planner (a plan(state) method), got "
                f"{type(planner).__name__}."
            )
        action_dim = int(model.config.action_dim)
        if not isinstance(action_space, gym.spaces.Box) or action_space.shape != (action_dim,):
            raise ConfigError(
                f"MPCPolicy.action_space: expected a Box of shape ({action_dim},) (the model's "
                f"action_dim), got {action_space!r}."
            )
        self.model = model
        self.planner = planner
        self.action_space = action_space
        self.seed = check_int("MPCPolicy", "seed", seed, 0)
        device = model.device
        self._low = torch.as_tensor(action_space.low, dtype=torch.float32, device=device)
        self._high = torch.as_tensor(action_space.high, dtype=torch.float32, device=device)
        for name in ("low", "high"):
            bound = getattr(planner, name, None)
            if isinstance(bound, torch.Tensor):
                bound = bound.to(device=device, dtype=torch.float32)
                if not bool(((bound >= self._low) & (bound <= self._high)).all()):
                    raise ConfigError(
                        f"MPCPolicy: the planner's {name} bound {bound.tolist()} lies outside the "
                        f"action space [{action_space.low.tolist()}, {action_space.high.tolist()}]."
                    )
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(self.seed)
        self._goal: State | None = None

    # -- goals ------------------------------------------------------------------------------------
    def set_goal(
        self,
        observation: np.ndarray | Any | None,
        mask: np.ndarray | Any | None = None,
    ) -> None:
        """Plan towards goal observations from the next :meth:`predict` call on: ``[n_envs, *O]``
        (one goal per env) or one ``[*O]`` for every env, encoded with the model; the planner
        then minimises the latent distance to the goal instead of maximising predicted reward.
        Goals stay until they are set again (a new episode keeps its env's goal): give
        ``mask`` (bool ``[n_envs]``) to replace only those envs' goals (e.g. the envs whose
        episode started), with ``observation`` holding a goal for every env. None: back to
        predicted rewards.

        Raises:
            ConfigError: a planner whose ``plan`` takes no ``goal``, or one that bootstraps with
                a ``value_fn`` (a value of rewards, which a goal replaces).
            ContractError: observations or mask of the wrong shape, or a mask without goals set
                for every env.
        """
        if observation is None:
            self._goal = None
            return
        name = type(self.planner).__name__
        if "goal" not in inspect.signature(self.planner.plan).parameters:
            raise ConfigError(
                f"MPCPolicy.set_goal: expected a planner whose plan() takes a goal "
                f"(CEMPlanner, MPPIPlanner), got {name}."
            )
        if getattr(self.planner, "value_fn", None) is not None:
            raise ConfigError(
                f"MPCPolicy.set_goal: expected a planner without value_fn (a goal replaces the "
                f"rewards a value sums), got {name} with one (e.g. tdmpc2_planner's)."
            )
        obs, _ = self._observations(observation, "MPCPolicy.set_goal")
        with torch.no_grad():
            goal = self.model.encode(obs)
        if mask is None:
            self._goal = goal
            return
        flags = np.asarray(mask, dtype=bool).reshape(-1)
        current = self._goal
        if current is None or current.batch_size != flags.shape[0] or goal.batch_size != len(flags):
            raise ContractError(
                f"MPCPolicy.set_goal: with a mask, expected goals already set for its "
                f"{flags.shape[0]} envs and {flags.shape[0]} goal observations, got "
                f"{0 if current is None else current.batch_size} set and {goal.batch_size} given."
            )
        rows = torch.from_numpy(flags).to(self.model.device)
        self._goal = State(
            {k: torch.where(_expand(rows, v), goal[k], v) for k, v in current.tensors.items()}
        )

    def _goal_for(self, n: int) -> State | None:
        goal = self._goal
        if goal is None or goal.batch_size == n:
            return goal
        if goal.batch_size == 1:
            return goal.map(lambda t: t.expand(n, *t.shape[1:]))
        raise ContractError(
            f"MPCPolicy.predict: the goal is for {goal.batch_size} envs, got observations of {n}."
        )

    # -- helpers ----------------------------------------------------------------------------------
    def _observations(
        self, observation: Any, owner: str = "MPCPolicy.predict"
    ) -> tuple[torch.Tensor, bool]:
        """The observations as a ``[n, *O]`` tensor on the model's device, and whether they
        came batched. Images as gymnasium gives them (``[H, W, C]``, channels last) are
        transposed to the model's ``[C, H, W]``, as the datasets store them for training."""
        obs_shape = tuple(self.model.config.obs_shape)
        if isinstance(observation, dict):
            raise ContractError(
                f"{owner}: expected array observations of shape [n_envs, *{list(obs_shape)}], "
                "got a dict."
            )
        array = np.asarray(observation)
        if len(obs_shape) == 3 and obs_shape[0] != obs_shape[2]:
            channels_last = (obs_shape[1], obs_shape[2], obs_shape[0])
            if array.shape[-3:] == channels_last and array.ndim in (3, 4):
                array = np.moveaxis(array, -1, -3)
        if array.shape == obs_shape:
            array, batched = array[None], False
        elif array.shape[1:] == obs_shape and array.shape[0] >= 1:
            batched = True
        else:
            raise ContractError(
                f"{owner}: expected observations of shape [n_envs, *{list(obs_shape)}] "
                f"or {list(obs_shape)}, got {list(array.shape)}."
            )
        if array.dtype != np.uint8:
            array = array.astype(np.float32, copy=False)
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.model.device), batched

    def _starts(self, episode_start: Any, n: int) -> torch.Tensor:
        flags = np.asarray(episode_start, dtype=bool).reshape(-1)
        if flags.shape != (n,):
            raise ContractError(
                f"MPCPolicy.predict: expected episode_start of {n} flags (one per env), got "
                f"shape {list(np.shape(episode_start))}."
            )
        return torch.from_numpy(flags).to(self.model.device)

    def _filter(self, obs: torch.Tensor, state: MPCState | None, starts: torch.Tensor) -> State:
        model = self.model
        if state is None:
            return model.encode(obs)
        if not isinstance(state, MPCState):
            raise ContractError(
                f"MPCPolicy.predict: expected the state it returned last (an MPCState) or None, "
                f"got {type(state).__name__}."
            )
        if state.latent.batch_size != obs.shape[0]:
            raise ContractError(
                f"MPCPolicy.predict: the state is for {state.latent.batch_size} envs, got "
                f"observations of {obs.shape[0]}."
            )
        if bool(starts.all()):
            return model.encode(obs)
        latent = model.update(state.latent, state.action, obs)
        if bool(starts.any()):
            fresh = model.encode(obs[starts])
            tensors = {}
            for key, value in latent.tensors.items():
                value = value.clone()
                value[starts] = fresh[key].to(value.dtype)
                tensors[key] = value
            latent = State(tensors, dict(latent.meta))
        return latent

    def _reset_planner(self, mask: torch.Tensor | None) -> None:
        reset = getattr(self.planner, "reset", None)
        if callable(reset):
            if mask is None:
                reset()
            else:
                reset(mask)

    # -- the SB3 interface ------------------------------------------------------------------------
    def predict(
        self,
        observation: np.ndarray | Any,
        state: MPCState | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, MPCState]:
        """Plan actions for a batch of real observations.

        Args:
            observation: ``[n_envs, *O]`` (a VecEnv's observations) or one ``[*O]``.
            state: None to start a new run (every env starts an episode; the planner is reset
                and both generators re-seeded, so a seeded evaluation reproduces), else the
                state this method returned last.
            episode_start: bool ``[n_envs]``: envs whose observation is the first of an episode
                (re-encoded; their warm starts reset). None: none (every env when ``state`` is
                None).
            deterministic: True: the planner's action. False: a sample of
                ``N(action, action_std)`` from the planner's final distribution
                (``extras["wf.planner.action_std"]``), clipped to the action space.

        Returns:
            actions ``[n_envs, A]`` (``[A]`` for one unbatched observation) in the action
            space's dtype, and the :class:`MPCState` to pass back next call.

        Raises:
            ContractError: observations, flags or state of the wrong shape or kind; a planner
                without ``"wf.planner.action_std"`` asked for non-deterministic actions.
        """
        obs, batched = self._observations(observation)
        n = obs.shape[0]
        if state is None:
            starts = torch.ones(n, dtype=torch.bool, device=obs.device)
        elif episode_start is None:
            starts = torch.zeros(n, dtype=torch.bool, device=obs.device)
        else:
            starts = self._starts(episode_start, n)
        with torch.no_grad():
            latent = self._filter(obs, state, starts)
            if state is None:
                self._reset_planner(None)
                self.generator.manual_seed(self.seed)
            elif bool(starts.any()):
                self._reset_planner(starts)
            goal = self._goal_for(n)
            if goal is None:
                out = self.planner.plan(latent)
            else:  # set_goal checked that this planner takes a goal
                out = self.planner.plan(latent, goal=goal)  # type: ignore[call-arg]
            dims = {"n": n, "A": int(self.model.config.action_dim)}
            action = check_shape("MPCPolicy", "planner action", out.action, ("n", "A"), dims)
            action = action.float()
            if not deterministic:
                std = out.extras.get(ACTION_STD_KEY)
                if std is None:
                    raise ContractError(
                        f"MPCPolicy.predict(deterministic=False): expected the planner's extras "
                        f"to hold {ACTION_STD_KEY!r} [n, A], got keys {sorted(out.extras)}."
                    )
                std = check_shape("MPCPolicy", ACTION_STD_KEY, std, ("n", "A"), dims)
                eps = torch.randn(action.shape, generator=self.generator, device=action.device)
                action = torch.clamp(action + std.float() * eps, min=self._low, max=self._high)
        actions = action.detach().cpu().numpy().astype(self.action_space.dtype, copy=False)
        new_state = MPCState(latent=latent, action=action)
        return (actions if batched else actions[0]), new_state


def _expand(rows: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Bool ``[B]`` -> ``[B, 1, ...]`` broadcastable against ``like [B, ...]``."""
    return rows.view(-1, *([1] * (like.dim() - 1)))
