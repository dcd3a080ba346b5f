"""Model-free offline baselines on a dataset's transitions, for comparison with agents trained in a
dream: behaviour cloning, TD3+BC (Fujimoto & Gu, 2021, "A Minimalist Approach to Offline
Reinforcement Learning") and IQL (Kostrikov, Nair & Levine, 2022, "Offline Reinforcement Learning
with Implicit Q-Learning"), written here on torch (d3rlpy pins an older gymnasium than WorldFlux
needs; ``benchmarks/validate_baselines.py`` compares them with it). All need a continuous (Box)
action space and vector observations.

Shapes: N = transitions, D = observation size, A = action size.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from ..core.errors import ConfigError
from ..data.episodes import EpisodeStore


def decision_rows(
    store: EpisodeStore, action_space: spaces.Space[Any], who: str
) -> tuple[np.ndarray, np.ndarray]:
    """Rows in ``store.obs`` of the observation before and after each step ``[N]`` each, for
    learners that need a continuous (Box) action space and vector observations (``who`` starts
    the error message, e.g. "offline baselines need")."""
    if not isinstance(action_space, spaces.Box):
        raise ConfigError(f"{who} a Box (continuous) action space, got {action_space}.")
    if store.obs.ndim != 2:
        raise ConfigError(f"{who} vector observations, got shape {store.obs.shape[1:]}.")
    return store.obs_rows(np.arange(store.num_steps))


@dataclass
class Transitions:
    """A dataset as single transitions (float32 tensors).

    Attributes:
        obs, next_obs: ``[N, D]``; actions: ``[N, A]`` scaled to [-1, 1]; rewards, dones:
            ``[N]`` (``dones`` = terminations, never truncations).
    """

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    dones: torch.Tensor

    @classmethod
    def from_store(
        cls, store: EpisodeStore, action_space: spaces.Space[Any], who: str = "offline baselines"
    ) -> Transitions:
        """The store's transitions; ``who`` (e.g. "[replay]") names the user in errors."""
        before, after = decision_rows(store, action_space, f"{who} need")
        assert isinstance(action_space, spaces.Box)
        scale = ActionScale(action_space, who)

        def t(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))

        return cls(
            obs=t(store.obs[before]),
            actions=t(scale.to_unit(store.actions)),
            rewards=t(store.rewards),
            next_obs=t(store.obs[after]),
            dones=t(store.terminations.astype(np.float32)),
        )

    def __len__(self) -> int:
        return len(self.obs)


class ActionScale:
    """Maps a Box's actions to [-1, 1] and back."""

    def __init__(self, space: spaces.Box, who: str = "offline baselines") -> None:
        self.low = space.low.astype(np.float32)
        self.high = space.high.astype(np.float32)
        if not (np.isfinite(self.low).all() and np.isfinite(self.high).all()):
            raise ConfigError(f"{who} need a bounded action space, got {space}.")

    def to_unit(self, actions: np.ndarray) -> np.ndarray:
        return 2.0 * (actions - self.low) / (self.high - self.low) - 1.0

    def from_unit(self, unit: np.ndarray) -> np.ndarray:
        return self.low + (np.clip(unit, -1.0, 1.0) + 1.0) * 0.5 * (self.high - self.low)


def _mlp(inp: int, out: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(inp, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, out),
    )


class OfflinePolicy:
    """A deterministic actor on normalised observations: ``[N, D]`` numpy -> ``[N, A]`` actions
    in the environment's bounds (callable like the other WorldFlux policies)."""

    def __init__(
        self, actor: nn.Module, mean: torch.Tensor, std: torch.Tensor, space: spaces.Box, name: str
    ) -> None:
        self.actor = actor.eval()
        self.mean, self.std = mean, std
        self.scale = ActionScale(space)
        self.name = name

    @torch.no_grad()
    def __call__(self, obs: np.ndarray) -> np.ndarray:
        x = (torch.as_tensor(np.asarray(obs), dtype=torch.float32) - self.mean) / self.std
        unit = torch.tanh(self.actor(x)).numpy()
        return self.scale.from_unit(unit).astype(np.float32)


def _normaliser(data: Transitions) -> tuple[torch.Tensor, torch.Tensor]:
    return data.obs.mean(0), data.obs.std(0) + 1e-3


@torch.no_grad()
def _soft_update(net: nn.Module, target: nn.Module, tau: float) -> None:
    """Polyak averaging: ``target <- (1 - tau) target + tau net``, parameter by parameter."""
    for p, tp in zip(net.parameters(), target.parameters(), strict=True):
        tp.mul_(1.0 - tau).add_(p, alpha=tau)


@dataclass
class Checkpoints:
    """Hands a copy of the policy being trained to ``call(updates_done, policy)`` every ``every``
    updates before the last (the caller scores it, e.g. for a learning curve)."""

    every: int
    call: Callable[[int, OfflinePolicy], None]

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ConfigError(f"checkpoints every: expected >= 1 update, got {self.every}.")

    def after(
        self, step: int, steps: int, actor: nn.Module, mean: torch.Tensor, std: torch.Tensor,
        space: spaces.Box, name: str,
    ) -> None:  # fmt: skip
        """Call back after update ``step`` (0-based) of ``steps`` when one is due."""
        done = step + 1
        if done % self.every == 0 and done < steps:
            self.call(done, OfflinePolicy(copy.deepcopy(actor), mean, std, space, name))


def behaviour_cloning(
    data: Transitions,
    space: spaces.Box,
    *,
    steps: int = 20_000,
    batch_size: int = 256,
    lr: float = 1e-3,
    hidden: int = 256,
    seed: int = 0,
    progress: bool = True,
    checkpoints: Checkpoints | None = None,
) -> OfflinePolicy:
    """Regress actions on observations (mean squared error in the [-1, 1] action scale)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    mean, std = _normaliser(data)
    obs = (data.obs - mean) / std
    actor = _mlp(obs.shape[1], data.actions.shape[1], hidden)
    opt = torch.optim.Adam(actor.parameters(), lr=lr)
    for step in tqdm(range(steps), desc="behaviour cloning", disable=not progress):
        idx = torch.from_numpy(rng.integers(len(data), size=batch_size))
        loss = F.mse_loss(torch.tanh(actor(obs[idx])), data.actions[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if checkpoints is not None:
            checkpoints.after(step, steps, actor, mean, std, space, "bc")
    return OfflinePolicy(actor, mean, std, space, "bc")


def td3_bc(
    data: Transitions,
    space: spaces.Box,
    *,
    steps: int = 100_000,
    batch_size: int = 256,
    lr: float = 3e-4,
    hidden: int = 256,
    alpha: float = 2.5,
    gamma: float = 0.99,
    tau: float = 0.005,
    policy_noise: float = 0.2,
    noise_clip: float = 0.5,
    policy_every: int = 2,
    seed: int = 0,
    progress: bool = True,
    checkpoints: Checkpoints | None = None,
) -> OfflinePolicy:
    """TD3 with a behaviour-cloning term in the actor loss,
    ``-lambda * Q(s, pi(s)) + (pi(s) - a)^2`` with ``lambda = alpha / mean|Q|`` (the paper's
    settings are the defaults; observations are normalised)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    mean, std = _normaliser(data)
    obs, next_obs = (data.obs - mean) / std, (data.next_obs - mean) / std
    d, a = obs.shape[1], data.actions.shape[1]
    actor = _mlp(d, a, hidden)
    critics = nn.ModuleList([_mlp(d + a, 1, hidden), _mlp(d + a, 1, hidden)])
    actor_target, critics_target = copy.deepcopy(actor), copy.deepcopy(critics)
    actor_opt = torch.optim.Adam(actor.parameters(), lr=lr)
    critic_opt = torch.optim.Adam(critics.parameters(), lr=lr)
    for step in tqdm(range(steps), desc="TD3+BC", disable=not progress):
        idx = torch.from_numpy(rng.integers(len(data), size=batch_size))
        s, act, s2 = obs[idx], data.actions[idx], next_obs[idx]
        r, done = data.rewards[idx], data.dones[idx]
        with torch.no_grad():
            noise = (torch.randn_like(act) * policy_noise).clamp(-noise_clip, noise_clip)
            a2 = (torch.tanh(actor_target(s2)) + noise).clamp(-1.0, 1.0)
            sa2 = torch.cat([s2, a2], 1)
            q_next = torch.min(critics_target[0](sa2), critics_target[1](sa2)).squeeze(1)
            target = r + gamma * (1.0 - done) * q_next
        sa = torch.cat([s, act], 1)
        critic_loss = sum(F.mse_loss(c(sa).squeeze(1), target) for c in critics)
        critic_opt.zero_grad()
        critic_loss.backward()  # type: ignore[union-attr]
        critic_opt.step()
        if step % policy_every == 0:
            pi = torch.tanh(actor(s))
            q = critics[0](torch.cat([s, pi], 1))
            lam = alpha / q.abs().mean().detach()
            actor_loss = -lam * q.mean() + F.mse_loss(pi, act)
            actor_opt.zero_grad()
            actor_loss.backward()
            actor_opt.step()
            _soft_update(actor, actor_target, tau)
            _soft_update(critics, critics_target, tau)
        if checkpoints is not None:
            checkpoints.after(step, steps, actor, mean, std, space, "td3bc")
    return OfflinePolicy(actor, mean, std, space, "td3bc")


def iql(
    data: Transitions,
    space: spaces.Box,
    *,
    steps: int = 100_000,
    batch_size: int = 256,
    lr: float = 3e-4,
    hidden: int = 256,
    expectile: float = 0.7,
    beta: float = 3.0,
    max_weight: float = 100.0,
    gamma: float = 0.99,
    tau: float = 0.005,
    reward_scale: float = 1.0,
    seed: int = 0,
    progress: bool = True,
    checkpoints: Checkpoints | None = None,
) -> OfflinePolicy:
    """Implicit Q-learning: ``V`` fits an upper ``expectile`` of the target critics' ``Q(s, a)``
    over the dataset's actions, the critics fit ``r + gamma V(s')`` (so no action outside the data
    is ever queried), and the actor is advantage-weighted regression,
    ``-min(exp(beta (Q - V)), max_weight) log pi(a | s)``, with a Gaussian policy whose mean is
    ``tanh`` of the network and whose log-std is one learned vector; the actor's learning rate
    decays to 0 on a cosine over ``steps``. The defaults are the paper's locomotion settings, where
    rewards are scaled by ``1000 / (max - min episode return)``: pass that as ``reward_scale``
    (see :func:`return_range_scale`). The returned policy acts with the mean."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    mean, std = _normaliser(data)
    obs, next_obs = (data.obs - mean) / std, (data.next_obs - mean) / std
    rewards = data.rewards * reward_scale
    d, a = obs.shape[1], data.actions.shape[1]
    actor = _mlp(d, a, hidden)
    log_std = nn.Parameter(torch.zeros(a))
    value = _mlp(d, 1, hidden)
    critics = nn.ModuleList([_mlp(d + a, 1, hidden), _mlp(d + a, 1, hidden)])
    critics_target = copy.deepcopy(critics)
    actor_opt = torch.optim.Adam([*actor.parameters(), log_std], lr=lr)
    actor_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(actor_opt, steps)
    value_opt = torch.optim.Adam(value.parameters(), lr=lr)
    critic_opt = torch.optim.Adam(critics.parameters(), lr=lr)
    for step in tqdm(range(steps), desc="IQL", disable=not progress):
        idx = torch.from_numpy(rng.integers(len(data), size=batch_size))
        s, act, s2 = obs[idx], data.actions[idx], next_obs[idx]
        r, done = rewards[idx], data.dones[idx]
        sa = torch.cat([s, act], 1)
        with torch.no_grad():
            q_target = torch.min(critics_target[0](sa), critics_target[1](sa)).squeeze(1)
        v = value(s).squeeze(1)
        diff = q_target - v
        weight = torch.where(diff > 0, expectile, 1.0 - expectile)
        value_loss = (weight * diff.pow(2)).mean()
        value_opt.zero_grad()
        value_loss.backward()
        value_opt.step()

        advantage = (q_target - v.detach()).mul(beta).exp().clamp(max=max_weight)
        dist = torch.distributions.Normal(torch.tanh(actor(s)), log_std.clamp(-5.0, 2.0).exp())
        actor_loss = -(advantage * dist.log_prob(act).sum(1)).mean()
        actor_opt.zero_grad()
        actor_loss.backward()
        actor_opt.step()
        actor_schedule.step()

        with torch.no_grad():
            target = r + gamma * (1.0 - done) * value(s2).squeeze(1)
        critic_loss = sum(F.mse_loss(c(sa).squeeze(1), target) for c in critics)
        critic_opt.zero_grad()
        critic_loss.backward()  # type: ignore[union-attr]
        critic_opt.step()
        _soft_update(critics, critics_target, tau)
        if checkpoints is not None:
            checkpoints.after(step, steps, actor, mean, std, space, "iql")
    return OfflinePolicy(actor, mean, std, space, "iql")


def return_range_scale(store: EpisodeStore) -> float:
    """IQL's locomotion reward scale, ``1000 / (max - min)`` over the store's episode returns
    (1.0 when every episode returns the same)."""
    returns = store.episode_returns()
    spread = float(returns.max() - returns.min()) if len(returns) else 0.0
    return 1000.0 / spread if spread > 0 else 1.0
