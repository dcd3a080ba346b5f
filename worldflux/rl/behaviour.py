"""Keeping a dream-trained agent near the dataset's behaviour (recipe table ``[behaviour]``).

A policy optimised only in a learned simulator drifts to where the model is wrong. Two standard
remedies, both optional and both fed with the (observation, action) pairs of the dataset the
dream was trained on:

* **warm start**: behaviour cloning of the policy before any dream step (the policy starts at
  the behaviour policy's return rather than at a random one, as BREMEN does; Matsushima et al.,
  2021), with the observation normaliser seeded with the dataset's statistics;
* **regularisation**: after every rollout, a few behaviour-cloning gradient steps on the policy's
  deterministic action (the behaviour-cloning term of TD3+BC, applied between the algorithm's own
  updates), so the dream's reward can move the policy only where the data keeps agreeing. The
  steps run when a rollout ends: for PPO/A2C that is between collecting the rollout and the
  update on it (PPO's clipped ratio absorbs the small shift), for SAC/TD3 after every
  ``train_freq`` collection, also before ``learning_starts``.

Works for every SB3 algorithm of the recipes: the clone target is the dataset action in the
policy's own action scale (``[-1, 1]`` for squashed SAC/TD3 policies, the environment's scale for
PPO/A2C). Shapes: N = dataset transitions, D = observation size, A = action size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from ..core.errors import ConfigError
from ..data.episodes import EpisodeStore
from .baselines import decision_rows

#: Adam learning rate of the warm start (the regularisation uses ``[behaviour] learning_rate``)
CLONE_LR = 1e-3
BATCH_SIZE = 256


@dataclass
class BehaviourSettings:
    """``[behaviour]`` of an agent recipe.

    Attributes:
        clone_steps: behaviour-cloning gradient steps before training in the dream (0: none).
        regularise_steps: behaviour-cloning gradient steps after every rollout (0: none): every
            ``n_steps x n_envs`` dream steps for PPO/A2C, every ``train_freq`` collection for
            SAC/TD3.
        learning_rate: Adam learning rate of the regularisation steps.
        dataset: the Minari dataset whose actions are cloned (None: the dream's own dataset),
            e.g. one behaviour policy's data when the dream learned from a broader mixture.
    """

    clone_steps: int = 0
    regularise_steps: int = 0
    learning_rate: float = 1e-4
    dataset: str | None = None

    def __post_init__(self) -> None:
        for key in ("clone_steps", "regularise_steps"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"[behaviour] {key}: expected an integer >= 0, got {value!r}.")
        rate = self.learning_rate
        if not isinstance(rate, int | float) or isinstance(rate, bool) or not rate > 0:
            raise ConfigError(f"[behaviour] learning_rate: expected a number > 0, got {rate!r}.")
        if self.dataset is not None and (not isinstance(self.dataset, str) or not self.dataset):
            raise ConfigError(
                f"[behaviour] dataset: expected a Minari dataset id, got {self.dataset!r}."
            )

    @property
    def active(self) -> bool:
        return self.clone_steps > 0 or self.regularise_steps > 0


@dataclass
class BehaviourData:
    """The dataset's decisions: ``obs [N, D]`` (float64, raw) and ``actions [N, A]`` (float32,
    the environment's scale)."""

    obs: np.ndarray
    actions: np.ndarray

    @classmethod
    def from_store(cls, store: EpisodeStore, action_space: spaces.Space[Any]) -> BehaviourData:
        before, _ = decision_rows(store, action_space, "[behaviour] needs")
        return cls(
            obs=np.asarray(store.obs[before], dtype=np.float64),
            actions=np.asarray(store.actions, dtype=np.float32),
        )

    def __len__(self) -> int:
        return len(self.obs)


def seed_normaliser(venv: Any, obs: np.ndarray) -> None:
    """Start a ``VecNormalize``'s observation statistics from a dataset's observations ``[N, D]``
    (counted as N samples, so the dream's observations refine rather than replace them)."""
    obs = np.asarray(obs, dtype=np.float64)
    rms = venv.obs_rms
    rms.mean = obs.mean(0)
    rms.var = obs.var(0)
    rms.count = float(len(obs))


class BehaviourCloner:
    """Behaviour-cloning gradient steps (Adam at ``learning_rate``, batches of 256) on an SB3
    policy's deterministic action.

    ``normalise`` maps raw observations ``[B, D]`` to the policy's input (VecNormalize's
    ``normalize_obs``, or the identity).
    """

    def __init__(
        self, policy: Any, data: BehaviourData, normalise: Any, seed: int, learning_rate: float
    ) -> None:
        self.policy = policy
        self.data = data
        self.normalise = normalise
        self.rng = np.random.default_rng(seed)
        target = data.actions
        if policy.squash_output:  # SAC/TD3 act in tanh's (-1, 1): a target beyond is unreachable
            target = np.clip(policy.scale_action(target), -1.0, 1.0)
        self.target = torch.as_tensor(np.asarray(target, dtype=np.float32))
        self.optimizer = torch.optim.Adam(policy.parameters(), lr=learning_rate)

    def step(self, steps: int) -> float:
        """``steps`` gradient steps; returns the last batch's mean squared error."""
        policy = self.policy
        device = policy.device
        training = policy.training
        policy.set_training_mode(True)
        loss = torch.zeros(())
        for _ in range(steps):
            idx = self.rng.integers(len(self.data), size=BATCH_SIZE)
            obs = np.asarray(self.normalise(self.data.obs[idx]), dtype=np.float32)
            predicted = policy._predict(torch.as_tensor(obs, device=device), deterministic=True)
            loss = torch.mean((predicted - self.target[idx].to(device)) ** 2)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        policy.set_training_mode(training)
        return float(loss.detach())
