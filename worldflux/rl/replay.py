"""Dataset transitions mixed into an off-policy agent's replay buffer (recipe table ``[replay]``).

MBPO/MOPO-style offline RL (Janner et al., 2019; Yu et al., 2020): a SAC or TD3 agent collects
short branches in a pessimistic dream env (``reset = "any"``: branches start from dataset states;
``horizon`` 1-10; ``penalty``: reward minus the model's uncertainty), and every gradient step
trains on a batch of which ``real_fraction`` comes from the dataset's own transitions and the rest
from the dream. The dream vector env is the only thing that steps the model: the agent's ordinary
``learn`` loop collects the branches, and this module only changes what its updates sample.

Both parts of a batch pass through the same ``VecNormalize`` (observations and rewards) when the
recipe normalises; dataset actions are stored in the policy's ``[-1, 1]`` scale, as SB3 stores the
dream's. Dataset ``dones`` are terminations only (time-limit truncations bootstrap).

Shapes: N = dataset transitions, D = observation size, A = action size, B = batch size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples

from ..core.errors import ConfigError
from .baselines import Transitions

#: off-policy algorithms whose replay buffer can take dataset transitions
OFF_POLICY = ("sac", "td3")


@dataclass
class ReplaySettings:
    """``[replay]`` of an agent recipe (SAC/TD3 only).

    Attributes:
        real_fraction: share of every training batch drawn from the dataset's transitions, in
            ``[0, 1)`` (MBPO/MOPO use 0.05; None: the table is off and batches come from the
            dream alone).
        dataset: the Minari dataset whose transitions are mixed in (None: the dream's own
            dataset).
    """

    real_fraction: float | None = None
    dataset: str | None = None

    def __post_init__(self) -> None:
        fraction = self.real_fraction
        if fraction is not None and (
            not isinstance(fraction, int | float)
            or isinstance(fraction, bool)
            or not 0.0 <= fraction < 1.0
        ):
            raise ConfigError(
                f"[replay] real_fraction: expected a number in [0, 1), got {fraction!r}."
            )
        if self.dataset is not None:
            if not isinstance(self.dataset, str) or not self.dataset:
                raise ConfigError(
                    f"[replay] dataset: expected a Minari dataset id, got {self.dataset!r}."
                )
            if fraction is None:
                raise ConfigError(
                    "[replay] dataset is set but real_fraction is not: set real_fraction (the "
                    "share of each batch drawn from the dataset)."
                )

    @property
    def active(self) -> bool:
        return self.real_fraction is not None


class DatasetMixReplayBuffer(ReplayBuffer):
    """An SB3 ``ReplayBuffer`` of dream transitions whose batches also draw
    ``round(real_fraction * B)`` transitions from a fixed dataset (uniformly, with replacement).

    Args:
        data: the dataset's transitions (actions in ``[-1, 1]``, as
            :meth:`Transitions.from_store` gives them).
        real_fraction: see :class:`ReplaySettings`.
        Other arguments as SB3's ``ReplayBuffer``.
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space[Any],
        action_space: spaces.Space[Any],
        *,
        data: Transitions,
        real_fraction: float,
        device: torch.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
    ) -> None:
        super().__init__(
            buffer_size,
            observation_space,
            action_space,
            device=device,
            n_envs=n_envs,
            optimize_memory_usage=optimize_memory_usage,
            handle_timeout_termination=handle_timeout_termination,
        )
        obs_shape = tuple(observation_space.shape or ())
        act_shape = tuple(action_space.shape or ())
        if tuple(data.obs.shape[1:]) != obs_shape or tuple(data.actions.shape[1:]) != act_shape:
            raise ConfigError(
                f"[replay] dataset: expected observations [N, *{obs_shape}] and actions "
                f"[N, *{act_shape}] like the dream's, got {tuple(data.obs.shape)} and "
                f"{tuple(data.actions.shape)}."
            )
        ReplaySettings(real_fraction=real_fraction)  # same checks as the recipe's
        self.real_fraction = float(real_fraction)
        self.data_obs = data.obs.numpy()
        self.data_next_obs = data.next_obs.numpy()
        self.data_actions = data.actions.numpy()
        self.data_rewards = data.rewards.numpy()
        self.data_dones = data.dones.numpy()

    def sample(self, batch_size: int, env: Any = None) -> ReplayBufferSamples:
        """``batch_size`` transitions: ``round(real_fraction * B)`` from the dataset, then the
        rest from the dream's, as float32 tensors ``[B, ...]`` normalised with ``env``'s
        statistics."""
        n_real = round(self.real_fraction * batch_size)
        idx = np.random.randint(0, len(self.data_obs), size=n_real)
        real = (
            self._normalize_obs(self.data_obs[idx], env),
            self.data_actions[idx],
            self._normalize_obs(self.data_next_obs[idx], env),
            self.data_dones[idx].reshape(-1, 1),
            self._normalize_reward(self.data_rewards[idx].reshape(-1, 1), env),
        )
        parts = [
            torch.as_tensor(np.asarray(x), dtype=torch.float32, device=self.device) for x in real
        ]
        if n_real < batch_size:
            sampled = super().sample(batch_size - n_real, env=env)
            dream = (sampled.observations, sampled.actions, sampled.next_observations,
                     sampled.dones, sampled.rewards)  # fmt: skip
            parts = [torch.cat([r, d.to(torch.float32)]) for r, d in zip(parts, dream, strict=True)]
        return ReplayBufferSamples(*parts)
