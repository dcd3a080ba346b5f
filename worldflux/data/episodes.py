"""`EpisodeStore`: every episode of a dataset in contiguous arrays.

This module is the one place where episode data is converted for models. It keeps Minari's time
alignment unchanged (see :mod:`worldflux.core.payloads`): an episode of T steps has T + 1
observations ``obs[0..T]``, and ``actions[t]``, ``rewards[t]``, ``terminations[t]``,
``truncations[t]`` all belong to the transition ``obs[t] --actions[t]--> obs[t+1]``.

Storage (E episodes, N = total steps)::

    obs           [N + E, *O]   episode i's observations at rows obs_starts[i] .. obs_starts[i]+T_i
    actions       [N, A]        float32 (one-hot for discrete spaces)
    rewards       [N]           float32
    terminations  [N]           bool
    truncations   [N]           bool
    lengths       [E]           T_i
    step_starts   [E]           first row of episode i in the step arrays
    obs_starts    [E]           step_starts + i (each earlier episode has one extra observation)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from ..core.errors import ContractError
from .spaces import ActionLayout, ObservationLayout


@dataclass
class EpisodeStore:
    """Contiguous episode arrays in the library's time alignment (see module docstring)."""

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    lengths: np.ndarray
    obs_layout: ObservationLayout
    action_layout: ActionLayout
    episode_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __post_init__(self) -> None:
        self.lengths = np.asarray(self.lengths, dtype=np.int64)
        n_steps, n_eps = int(self.lengths.sum()), len(self.lengths)
        if len(self.episode_ids) == 0:
            self.episode_ids = np.arange(n_eps, dtype=np.int64)
        expected = {
            "obs": (n_steps + n_eps, *self.obs_layout.shape),
            "actions": (n_steps, self.action_layout.dim),
            "rewards": (n_steps,),
            "terminations": (n_steps,),
            "truncations": (n_steps,),
            "episode_ids": (n_eps,),
        }
        for key, shape in expected.items():
            got = tuple(getattr(self, key).shape)
            if got != shape:
                raise ContractError(
                    f"EpisodeStore.{key}: expected shape {list(shape)}, got {list(got)}."
                )
        if n_eps and int(self.lengths.min()) < 1:
            raise ContractError("EpisodeStore: every episode needs at least one step.")
        self.step_starts = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
        self.obs_starts = self.step_starts + np.arange(n_eps, dtype=np.int64)
        #: ``[N]`` episode index of every step
        self.step_episode = np.repeat(np.arange(n_eps, dtype=np.int64), self.lengths)

    # -- construction (the one conversion point) --------------------------------------------
    @classmethod
    def from_episodes(
        cls,
        episodes: Iterable[Mapping[str, np.ndarray]],
        obs_layout: ObservationLayout,
        action_layout: ActionLayout,
    ) -> EpisodeStore:
        """Build from Minari-style episode dicts (``observations`` T+1 rows, ``actions``,
        ``rewards``, ``terminations``, ``truncations`` T rows each; optional ``id``).

        Raises:
            ContractError: naming the episode and field, for misaligned lengths, non-finite
                values, or a termination/truncation before the last step.
        """
        obs, acts, rews, terms, truncs, lengths, ids = [], [], [], [], [], [], []
        for position, ep in enumerate(episodes):
            ident = int(ep.get("id", position))
            where = f"episode {ident}"
            actions = np.asarray(ep["actions"])
            steps = len(actions)
            observations = np.asarray(ep["observations"])
            if steps < 1:
                raise ContractError(f"{where}: expected at least one step, got 0 actions.")
            if len(observations) != steps + 1:
                raise ContractError(
                    f"{where}: expected T+1 = {steps + 1} observations for T = {steps} actions, "
                    f"got {len(observations)} (Minari layout: observations[0..T])."
                )
            fields = {}
            for key in ("rewards", "terminations", "truncations"):
                value = np.asarray(ep[key]).reshape(-1)
                if len(value) != steps:
                    raise ContractError(
                        f"{where}: expected {steps} {key} (one per action), got {len(value)}."
                    )
                fields[key] = value
            ended = np.flatnonzero(
                fields["terminations"].astype(bool) | fields["truncations"].astype(bool)
            )
            if len(ended) and ended[0] != steps - 1:
                raise ContractError(
                    f"{where}: episode ends (termination/truncation) at step {ended[0]} but has "
                    f"{steps} steps; an episode must end at its first termination or truncation."
                )
            converted_obs = obs_layout.convert(observations)
            converted_act = action_layout.convert(actions)
            rewards = fields["rewards"].astype(np.float32)
            for key, value in (
                ("observations", converted_obs),
                ("actions", converted_act),
                ("rewards", rewards),
            ):
                if value.dtype.kind == "f" and not np.isfinite(value).all():
                    raise ContractError(f"{where}: {key} contain NaN or infinity.")
            obs.append(converted_obs)
            acts.append(converted_act)
            rews.append(rewards)
            terms.append(fields["terminations"].astype(bool))
            truncs.append(fields["truncations"].astype(bool))
            lengths.append(steps)
            ids.append(ident)
        if not lengths:
            raise ContractError("EpisodeStore: the dataset has no episodes.")
        return cls(
            obs=np.concatenate(obs),
            actions=np.concatenate(acts),
            rewards=np.concatenate(rews),
            terminations=np.concatenate(terms),
            truncations=np.concatenate(truncs),
            lengths=np.asarray(lengths, dtype=np.int64),
            obs_layout=obs_layout,
            action_layout=action_layout,
            episode_ids=np.asarray(ids, dtype=np.int64),
        )

    # -- views --------------------------------------------------------------------------------
    @property
    def num_episodes(self) -> int:
        return len(self.lengths)

    @property
    def num_steps(self) -> int:
        return int(self.lengths.sum())

    def episode_returns(self) -> np.ndarray:
        """``[E]`` undiscounted return of every episode."""
        return np.add.reduceat(self.rewards.astype(np.float64), self.step_starts)

    def obs_rows(self, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows in :attr:`obs` of ``obs[t]`` and ``obs[t+1]`` for global step indices ``steps``."""
        before = steps + self.step_episode[steps]
        return before, before + 1
