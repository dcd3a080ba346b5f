"""TD-MPC2 (Hansen et al., 2024): a decoder-free ("implicit") world model with a value function
and a policy prior, the family of the ``tdmpc2`` name (alias ``td-mpc2``).

Layers (L = ``latent_dim``, A = action size, K = ``num_bins``, Q = ``num_q``):

* ``observation_encoder``: standardised observation ``[B, D]`` -> MLP (LayerNorm + Mish) ->
  SimNorm latent ``z [B, L]`` (softmax over groups of ``simplex_dim``).
* ``dynamics_model``: ``z' = d(z, a)`` (MLP ending in SimNorm), the reward head ``R(z, a)``
  (K logits, two-hot regression over symlog bins) and a termination head ``T(z')`` (a logit).
* ``decoder``: state -> ``ModelOutput`` with ``reward`` and ``continue`` only: there is **no
  observation decoder**, so dreams serve this family in latent-observation mode.
* Not layers of the contract, attributes of the model: the Q-ensemble ``q`` (Q MLPs of K logits,
  1% dropout in their first layer), its EMA copy ``q_target`` (updated in :meth:`after_update`)
  and the policy prior ``policy`` (a squashed Gaussian, ``tanh`` actions in [-1, 1]).

State ``{"z": [B, L], "reward": [B], "continue": [B]}``: the latent plus what was predicted for
the transition into it (as the ensemble family does), so ``decode(transition(s, a))`` gives the
reward of taking ``a`` in ``s``. The model is deterministic (no ``noise_spec``). ``update`` encodes
the new observation (the latent of TD-MPC2 is computed from one observation, no filtering) and
keeps the predicted reward and continue of the step.

Loss on a batch of sequences (T = the batch's ``seq_len``, the paper's horizon, 3 by default;
every term is weighted by ``rho**t`` and averaged over valid steps):

* latent consistency ``||d(z_t, a_t) - sg(enc(o_{t+1}))||^2`` along the imagined latents
  ``z_0 = enc(o_0)``, ``z_{t+1} = d(z_t, a_t)``;
* reward cross-entropy of ``R(z_t, a_t)`` against the two-hot of ``r_t``;
* value cross-entropy of every ``Q_i(z_t, a_t)`` against the TD target
  ``r_t + discount * (1 - term_t) * min(Q'_j, Q'_k)(z'_{t+1}, pi(z'_{t+1}))`` (two random target
  members, ``z'`` the encoded next observation, no gradient);
* termination BCE of ``T(z_{t+1})`` (unweighted mean);
* the policy loss ``-(entropy_coef * A * H[pi] + Q(z, pi(z)) / S)`` on the T + 1 detached
  latents, with ``S`` a moving 5-95 percentile range of Q (at least 1) and Q's weights detached,
  so it trains only the policy;
* the **offline guard** (``bc_coef``): ``bc_coef * ||tanh(mu(z_t)) - a_t||^2`` added to the
  policy loss, a behaviour-constrained prior as in TD3+BC and TD-M(PC)^2. The Trainer learns from
  logged data only; without the guard the TD target bootstraps from the prior's actions, which
  drift to actions the data never shows, where Q is an unchecked extrapolation that the policy then
  exploits. The constraint keeps the prior (hence the TD target's actions and the planner's prior
  samples) near the data, while the critic stays the paper's. ``bc_coef=0`` is the paper's
  online loss.

Actions: the policy prior acts in [-1, 1] (as the paper normalises every action space); train on
datasets whose actions lie there.

Differences from the official code: one optimiser and one gradient clip for everything (the
paper gives the policy its own Adam); Q for the policy loss and the planner's value is the mean
of all members (the paper: two random ones); the entropy is that of the squashed sample (the
paper's code uses the Gaussian's before tanh); ``discount`` is a setting (default 0.99; the
paper derives 0.95-0.995 from the episode length, 0.995 for 1,000-step tasks).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ...core.config import WorldModelConfig
from ...core.errors import ConfigError, ContractError
from ...core.model import WorldModel
from ...core.payloads import (
    ActionPayload,
    Batch,
    ConditionPayload,
    LossOutput,
    ModelOutput,
    WorldModelInput,
)
from ...core.registry import WorldModelRegistry
from ...core.state import State
from .._statistics import copy_obs_statistics
from .nets import NormedEnsemble, SimNorm, TwoHot, mlp, squashed_gaussian

#: Floor of observation standard deviations given to :meth:`TDMPC2Model.set_data_statistics`.
MIN_STD = 1e-6
#: Training sequences longer than this get a warning (the paper's horizon is 3).
LONG_HORIZON = 16


@dataclass
class TDMPC2Config(WorldModelConfig):
    """TD-MPC2 settings (vector observations). Defaults follow the paper.

    Attributes:
        latent_dim: L, size of the SimNorm latent (a multiple of ``simplex_dim``).
        simplex_dim: group size of SimNorm.
        enc_dim: width of the encoder's hidden layers.
        enc_layers: encoder depth: ``max(enc_layers - 1, 1)`` hidden layers, then the latent layer.
        mlp_dim: width of the two hidden layers of dynamics, reward, termination, Q and policy.
        num_q: Q, members of the Q-ensemble.
        dropout: dropout after the first layer of every Q member.
        num_bins: K, bins of the two-hot regression of rewards and values.
        vmin, vmax: range of the bins in symlog space.
        rho: temporal weight of step t, ``rho**t``.
        discount: discount of the TD target.
        tau: EMA rate of the target Q-ensemble and of the Q scale.
        consistency_coef, reward_coef, value_coef, termination_coef: loss weights.
        entropy_coef: weight of the policy's (action-size scaled) entropy.
        log_std_min, log_std_max: range of the policy's log standard deviation.
        bc_coef: the offline guard, weight of the behaviour-cloning term of the policy loss
            (0: the paper's online loss).
        enc_lr_scale: learning-rate multiplier of the encoder.
        uncertainty_heads: heads (``mlp_dim / 2`` wide) that each predict the next latent from
            the detached ``(z, a)``; their disagreement is ``decode(...).uncertainty`` (0: none).
            Not part of the paper; they do not change the model's training.

    Presets by the paper's sizes, counting its learned networks (encoder, dynamics, reward,
    termination, Q-ensemble, policy; not the EMA target copy or the uncertainty heads) for
    17-dim observations and 6-dim actions (e.g. Walker2d): ``1m`` (1.06M), ``5m`` (5.49M, the
    default), ``19m`` (19.9M), ``48m`` (51.8M); ``tiny`` for tests. ``1m`` uses ``mlp_dim``
    320 where the paper has 384: with the termination head and 101 bins, 384 gives 1.41M.
    """

    latent_dim: int = 512
    simplex_dim: int = 8
    enc_dim: int = 256
    enc_layers: int = 2
    mlp_dim: int = 512
    num_q: int = 5
    dropout: float = 0.01
    num_bins: int = 101
    vmin: float = -10.0
    vmax: float = 10.0
    rho: float = 0.5
    discount: float = 0.99
    tau: float = 0.01
    consistency_coef: float = 20.0
    reward_coef: float = 0.1
    value_coef: float = 0.1
    termination_coef: float = 1.0
    entropy_coef: float = 1e-4
    log_std_min: float = -10.0
    log_std_max: float = 2.0
    bc_coef: float = 1.0
    enc_lr_scale: float = 0.3
    uncertainty_heads: int = 5

    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": dict(latent_dim=64, enc_dim=64, mlp_dim=64, num_q=2, num_bins=51),
        "1m": dict(latent_dim=128, enc_dim=256, mlp_dim=320, enc_layers=2, num_q=2),
        "5m": dict(latent_dim=512, enc_dim=256, mlp_dim=512, enc_layers=2, num_q=5),
        "19m": dict(latent_dim=768, enc_dim=1024, mlp_dim=1024, enc_layers=3, num_q=5),
        "48m": dict(latent_dim=768, enc_dim=1792, mlp_dim=1792, enc_layers=4, num_q=5),
    }
    default_preset: ClassVar[str | None] = "5m"

    def validate(self) -> None:
        super().validate()
        name = type(self).__name__
        for key in ("latent_dim", "enc_dim", "enc_layers", "mlp_dim", "num_q"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{name}.{key}: expected >= 1, got {getattr(self, key)}.")
        if self.simplex_dim < 2 or self.latent_dim % self.simplex_dim:
            raise ConfigError(
                f"{name}: latent_dim must be a multiple of simplex_dim >= 2, got latent_dim="
                f"{self.latent_dim}, simplex_dim={self.simplex_dim}."
            )
        if self.num_q < 2:
            raise ConfigError(
                f"{name}.num_q: expected >= 2 (the TD target takes the minimum of two members), "
                f"got {self.num_q}."
            )
        if self.num_bins < 2:
            raise ConfigError(f"{name}.num_bins: expected >= 2, got {self.num_bins}.")
        if not self.vmin < self.vmax:
            raise ConfigError(f"{name}: expected vmin < vmax, got {self.vmin}, {self.vmax}.")
        for key, low, high in (
            ("dropout", 0.0, 0.99),
            ("rho", 0.0, 1.0),
            ("discount", 0.0, 1.0),
            ("tau", 0.0, 1.0),
        ):
            value = getattr(self, key)
            if not low <= value <= high:
                raise ConfigError(f"{name}.{key}: expected in [{low}, {high}], got {value}.")
        for key in (
            "consistency_coef",
            "reward_coef",
            "value_coef",
            "termination_coef",
            "entropy_coef",
            "bc_coef",
        ):
            if getattr(self, key) < 0:
                raise ConfigError(f"{name}.{key}: expected >= 0, got {getattr(self, key)}.")
        if self.uncertainty_heads < 0 or self.uncertainty_heads == 1:
            raise ConfigError(
                f"{type(self).__name__}.uncertainty_heads: expected 0 (none) or >= 2 (their "
                f"disagreement is the uncertainty), got {self.uncertainty_heads}."
            )
        if self.enc_lr_scale <= 0:
            raise ConfigError(f"{name}.enc_lr_scale: expected > 0, got {self.enc_lr_scale}.")
        if not self.log_std_min < self.log_std_max:
            raise ConfigError(
                f"{name}: expected log_std_min < log_std_max, got {self.log_std_min}, "
                f"{self.log_std_max}."
            )
        if self.obs_shape and len(self.obs_shape) != 1:
            raise ConfigError(
                f"{name}.obs_shape: expected a vector shape (D,), got {self.obs_shape} "
                "(this family encodes vector observations)."
            )

    @property
    def obs_dim(self) -> int:
        return int(self.obs_shape[0])


# -- layers -----------------------------------------------------------------------------------------
class TDMPC2Encoder(nn.Module):
    """Observations ``[B, D]`` -> SimNorm latents ``[B, L]`` (standardised with the train
    split's mean and std, identity until :meth:`set_statistics`)."""

    obs_mean: torch.Tensor
    obs_std: torch.Tensor

    def __init__(self, config: TDMPC2Config) -> None:
        super().__init__()
        c = config
        hidden = [c.enc_dim] * max(c.enc_layers - 1, 1)
        self.net = mlp(
            c.obs_dim, hidden, c.latent_dim, out_activation=SimNorm(c.latent_dim, c.simplex_dim)
        )
        self.register_buffer("obs_mean", torch.zeros(c.obs_dim))
        self.register_buffer("obs_std", torch.ones(c.obs_dim))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net((obs.float() - self.obs_mean) / self.obs_std)
        return out

    def set_statistics(self, stats: Mapping[str, Any]) -> None:
        copy_obs_statistics(
            stats,
            self.obs_mean,
            self.obs_std,
            min_std=MIN_STD,
            hint="this family needs vector observations",
        )


class TDMPC2Dynamics(nn.Module):
    """Latent dynamics, reward and termination heads.

    ``forward(state, features [B, L + A]) -> State``: ``features`` is the latent and the action,
    concatenated; the result is the next latent with the step's expected reward (from the K reward
    logits) and continue probability ``1 - sigmoid(T(z'))``. Deterministic: ``deterministic`` is
    accepted for the layer contract and changes nothing, ``noise`` must be None.
    """

    def __init__(self, config: TDMPC2Config) -> None:
        super().__init__()
        c = config
        za = c.latent_dim + c.action_dim
        self.next = mlp(
            za, [c.mlp_dim] * 2, c.latent_dim, out_activation=SimNorm(c.latent_dim, c.simplex_dim)
        )
        self.reward = mlp(za, [c.mlp_dim] * 2, c.num_bins, zero_out=True)
        self.termination = mlp(c.latent_dim, [c.mlp_dim] * 2, 1)
        self.two_hot = TwoHot(c.num_bins, c.vmin, c.vmax)
        self.heads = (
            NormedEnsemble(c.uncertainty_heads, za, max(c.mlp_dim // 2, 1), 2, c.latent_dim)
            if c.uncertainty_heads
            else None
        )

    def disagreement(self, features: torch.Tensor) -> torch.Tensor:
        """``features [B, L + A]`` -> ``[B]``: ``sqrt(mean_l var_k head_k(z, a)_l)``."""
        assert self.heads is not None
        predictions = self.heads(features.detach().float())  # [K, B, L]
        return predictions.var(0, unbiased=False).mean(-1).sqrt()

    def forward(
        self,
        state: State,
        features: torch.Tensor,
        *,
        deterministic: bool = False,
        noise: Mapping[str, torch.Tensor] | None = None,
    ) -> State:
        del state, deterministic
        if noise:
            raise ContractError(
                f"TD-MPC2 dynamics are deterministic: expected no noise, got keys {sorted(noise)}."
            )
        za = features.float()
        nxt = self.next(za)
        reward = self.two_hot.value(self.reward(za))
        cont = 1.0 - torch.sigmoid(self.termination(nxt).squeeze(-1))
        tensors = {"z": nxt, "reward": reward, "continue": cont}
        if self.heads is not None:
            tensors["uncertainty"] = self.disagreement(za)
        return State(tensors)


class TDMPC2Decoder(nn.Module):
    """State -> ``ModelOutput`` with ``reward`` and ``continue`` (no observation: the family has
    no decoder) and the heads' disagreement as ``uncertainty`` where the state carries it. No
    weights."""

    def __init__(self, config: TDMPC2Config) -> None:
        super().__init__()
        del config

    def forward(self, state: State) -> ModelOutput:
        preds = {"reward": state["reward"], "continue": state["continue"]}
        if "uncertainty" not in state:
            return ModelOutput(preds)
        return ModelOutput(preds, uncertainty=state["uncertainty"])


class PolicyPrior(nn.Module):
    """``z [..., L]`` -> squashed Gaussian over actions in [-1, 1]: ``(mean [..., A],
    log_std [..., A])``, the log-std squashed into ``[log_std_min, log_std_max]``."""

    def __init__(self, config: TDMPC2Config) -> None:
        super().__init__()
        c = config
        self.net = mlp(c.latent_dim, [c.mlp_dim] * 2, 2 * c.action_dim)
        self.low, self.high = c.log_std_min, c.log_std_max

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, raw = self.net(z).chunk(2, dim=-1)
        log_std = self.low + 0.5 * (self.high - self.low) * (torch.tanh(raw) + 1)
        return mean, log_std


# -- the family -------------------------------------------------------------------------------------
@WorldModelRegistry.register("tdmpc2", TDMPC2Config, aliases=("td-mpc2",))
class TDMPC2Model(WorldModel):
    """TD-MPC2 world model with value, policy prior and offline guard (module docstring)."""

    config: TDMPC2Config
    decodes_observations: ClassVar[bool] = False
    q_scale: torch.Tensor
    statistics_set: torch.Tensor
    component_defaults: ClassVar[Mapping[str, Any]] = {
        "observation_encoder": TDMPC2Encoder,
        "dynamics_model": TDMPC2Dynamics,
        "decoder": TDMPC2Decoder,
    }

    def __init__(
        self,
        config: WorldModelConfig,
        component_overrides: Any = None,
        *,
        trust_imports: bool = True,
    ) -> None:
        super().__init__(config, component_overrides, trust_imports=trust_imports)
        c = self.config
        self.q = NormedEnsemble(
            c.num_q,
            c.latent_dim + c.action_dim,
            c.mlp_dim,
            2,
            c.num_bins,
            dropout=c.dropout,
            zero_out=True,
        )
        self.q_target = NormedEnsemble(
            c.num_q,
            c.latent_dim + c.action_dim,
            c.mlp_dim,
            2,
            c.num_bins,
            zero_out=True,
        )  # no dropout: the TD target is computed as in evaluation
        self.q_target.load_state_dict(self.q.state_dict())
        self.q_target.requires_grad_(False)
        self.policy = PolicyPrior(c)
        self.two_hot = TwoHot(c.num_bins, c.vmin, c.vmax)
        #: the moving 5-95 percentile range of Q that scales the policy loss (saved)
        self.register_buffer("q_scale", torch.ones(()))
        #: whether :meth:`set_data_statistics` has set the normalisation (saved with the weights)
        self.register_buffer("statistics_set", torch.zeros((), dtype=torch.bool))
        self._warned_horizon = False

    # -- layout -----------------------------------------------------------------------------------
    def state_spec(self) -> dict[str, tuple[int | str, ...]]:
        spec: dict[str, tuple[int | str, ...]] = {
            "z": (self.config.latent_dim,),
            "reward": (),
            "continue": (),
        }
        if self.config.uncertainty_heads:
            spec["uncertainty"] = ()
        return spec

    def latent_keys(self) -> tuple[str, ...]:
        """The SimNorm latent (reward and continue are the last step's predictions)."""
        return ("z",)

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """The uniform point of every simplex (no observation seen), reward 0, continue 1."""
        c = self.config
        where = self.device if device is None else device
        z = torch.full((batch_size, c.latent_dim), 1.0 / c.simplex_dim, device=where)
        return self._state_of(z)

    def _state_of(self, z: torch.Tensor) -> State:
        """The state of latents ``z`` seen, not predicted: reward 0, continue 1, uncertainty 0."""
        zeros = z.new_zeros(z.shape[0])
        tensors = {"z": z, "reward": zeros, "continue": torch.ones_like(zeros)}
        if self.config.uncertainty_heads:
            tensors["uncertainty"] = zeros
        return State(tensors)

    # -- the contract -----------------------------------------------------------------------------
    def _encode(self, obs: torch.Tensor) -> torch.Tensor:
        z: torch.Tensor = self.component("observation_encoder")(obs)
        return z

    def _step(self, state: State, action: torch.Tensor) -> State:
        features = torch.cat([state["z"], action.float()], -1)
        nxt: State = self.component("dynamics_model")(state, features)
        return nxt

    def encode(self, obs: WorldModelInput | torch.Tensor) -> State:
        inp = self.check_obs(obs)
        return self._state_of(self._encode(inp.obs))

    def transition(
        self,
        state: State,
        action: ActionPayload | torch.Tensor,
        conditions: ConditionPayload | None = None,
        deterministic: bool = False,
        noise: Mapping[str, torch.Tensor] | None = None,
    ) -> State:
        """Deterministic latent step (``deterministic`` changes nothing; ``noise`` must be
        empty: the family has no noise inputs)."""
        self.check_state(state)
        act = self.check_action(action, state.batch_size)
        if conditions is not None and conditions.tensors:
            raise ContractError(
                f"TDMPC2Model takes no conditions, got keys {sorted(conditions.tensors)}."
            )
        if noise:
            raise ContractError(
                f"TDMPC2Model is deterministic: expected no noise, got keys {sorted(noise)}."
            )
        return self._step(state, act)

    def update(
        self,
        state: State,
        action: ActionPayload | torch.Tensor,
        obs: WorldModelInput | torch.Tensor,
    ) -> State:
        self.check_state(state)
        act = self.check_action(action, state.batch_size)
        inp = self.check_obs(obs)
        nxt = self._step(state, act)
        nxt.tensors["z"] = self._encode(inp.obs)
        return nxt

    def decode(self, state: State) -> ModelOutput:
        out: ModelOutput = self.component("decoder")(self.check_state(state))
        return out

    # -- value and policy prior (for planners) ----------------------------------------------------
    def q_values(
        self, z: torch.Tensor, action: torch.Tensor, *, target: bool = False
    ) -> torch.Tensor:
        """``z [B, L]``, ``action [B, A]`` -> ``[Q, B]`` every member's expected value."""
        net = self.q_target if target else self.q
        logits = net(torch.cat([z, action.float()], -1))
        return self.two_hot.value(logits)

    def policy_action(
        self,
        z: torch.Tensor,
        *,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The prior's action ``[B, A]`` in [-1, 1] for latents ``z [B, L]``: ``tanh(mean)``
        when ``deterministic``, else a sample (noise from ``generator`` when given)."""
        mean, log_std = self.policy(z)
        if deterministic:
            return torch.tanh(mean)
        eps = torch.randn(mean.shape, device=mean.device, generator=generator)
        action, _ = squashed_gaussian(mean, log_std, eps)
        return action

    def value(self, state: State) -> torch.Tensor:
        """``[B]``: the mean over the Q-ensemble of ``Q(z, tanh(mean(z)))``, the value of acting
        with the prior's mode from ``state`` (a planner's terminal value, ``value_fn``)."""
        z = self.check_state(state)["z"]
        return self.q_values(z, self.policy_action(z, deterministic=True)).mean(0)

    def prior(
        self,
        state: State,
        generator: torch.Generator | None = None,
        *,
        deterministic: bool = False,
    ) -> torch.Tensor:
        """``[B, A]`` actions of the policy prior: samples (a planner's ``prior_fn``; noise from
        ``generator`` when given), or its mode with ``deterministic``."""
        z = self.check_state(state)["z"]
        return self.policy_action(z, deterministic=deterministic, generator=generator)

    # -- training ---------------------------------------------------------------------------------
    def _td_target(
        self, next_z: torch.Tensor, reward: torch.Tensor, term: torch.Tensor
    ) -> torch.Tensor:
        """``next_z [T, B, L]``, ``reward``, ``term [T, B]`` -> TD targets ``[T, B]``."""
        t, b = reward.shape
        flat = next_z.flatten(0, 1)
        action = self.policy_action(flat)
        values = self.q_values(flat, action, target=True)  # [Q, T*B]
        pick = torch.randperm(self.config.num_q, device=flat.device)[:2]
        bootstrap = values[pick].min(0).values.view(t, b)
        return reward + self.config.discount * (1.0 - term) * bootstrap

    def _update_q_scale(self, q: torch.Tensor) -> None:
        low, high = torch.quantile(q.detach().float().flatten(), q.new_tensor([0.05, 0.95]))
        spread = (high - low).clamp(min=1.0)
        self.q_scale.lerp_(spread.to(self.q_scale.dtype), self.config.tau)

    def loss(self, batch: Batch) -> LossOutput:
        self.check_batch(batch)
        c = self.config
        obs = batch.obs.transpose(0, 1).float()  # [T+1, B, D]
        actions = batch.actions.transpose(0, 1).float()  # [T, B, A]
        rewards = batch.rewards.transpose(0, 1).float()  # [T, B]
        term = batch.terminations.transpose(0, 1).float()  # [T, B]
        mask = batch.valid.transpose(0, 1).float()  # [T, B]
        steps, rows = rewards.shape
        weight = c.rho ** torch.arange(steps, device=rewards.device, dtype=torch.float32)
        per_step = mask.sum(1).clamp(min=1.0)  # [T]

        def weighted(x: torch.Tensor) -> torch.Tensor:
            """``[T, B]`` -> sum_t rho^t * (masked mean over B) / T."""
            return (weight * (x * mask).sum(1) / per_step).sum() / steps

        with torch.no_grad():
            next_z = self._encode(obs[1:].flatten(0, 1)).view(steps, rows, -1)
            td_target = self._td_target(next_z, rewards, term)

        dyn = self.component("dynamics_model")
        z = self._encode(obs[0])
        zs = [z]
        for t in range(steps):
            z = dyn.next(torch.cat([z, actions[t]], -1))
            zs.append(z)
        latents = torch.stack(zs)  # [T+1, B, L]
        consistency = weighted(((latents[1:] - next_z) ** 2).mean(-1))

        za = torch.cat([latents[:-1], actions], -1)  # [T, B, L + A]
        reward_loss = weighted(dyn.two_hot.loss(dyn.reward(za), rewards))
        q_logits = self.q(za.flatten(0, 1)).view(c.num_q, steps, rows, -1)
        value_loss = weighted(self.two_hot.loss(q_logits, td_target.unsqueeze(0)).mean(0))
        term_logit = dyn.termination(latents[1:]).squeeze(-1)
        termination = (
            F.binary_cross_entropy_with_logits(term_logit, term, reduction="none") * mask
        ).sum() / mask.sum().clamp(min=1.0)

        # policy prior on all T + 1 detached latents (z_T is alive where step T - 1 is real); Q's
        # weights detached so only the policy learns
        zd = latents.detach()
        mean, log_std = self.policy(zd)
        eps = torch.randn_like(mean)
        pi_action, log_prob = squashed_gaussian(mean, log_std, eps)
        q_pi = self.two_hot.value(
            self.q(torch.cat([zd, pi_action], -1).flatten(0, 1), detach_params=True)
        ).view(c.num_q, steps + 1, rows)
        q_pi = q_pi.mean(0)  # [T + 1, B]
        if self.training:
            with torch.no_grad():
                self._update_q_scale(q_pi[0])
            if steps > LONG_HORIZON and not self._warned_horizon:
                self._warned_horizon = True
                warnings.warn(
                    f"TD-MPC2 trains on short sequences (the paper's horizon is 3, "
                    f"--seq-len 3); got {steps} steps, a latent rollout that deep and losses "
                    "weighted by rho**t over it.",
                    stacklevel=2,
                )
        entropy = -log_prob * c.action_dim
        pi_mask = torch.cat([mask[:1], mask])  # [T + 1, B]
        pi_weight = c.rho ** torch.arange(steps + 1, device=rewards.device, dtype=torch.float32)
        objective = ((c.entropy_coef * entropy + q_pi / self.q_scale) * pi_mask).sum(1)
        policy_loss = -(pi_weight * objective / pi_mask.sum(1).clamp(min=1.0)).sum() / (steps + 1)
        bc = weighted(((torch.tanh(mean[:-1]) - actions) ** 2).mean(-1))  # logged actions: T
        if dyn.heads is not None:  # trained on detached inputs: the model itself is unchanged
            guesses = dyn.heads(za.detach().flatten(0, 1)).view(-1, steps, rows, c.latent_dim)
            heads = weighted(((guesses - next_z.unsqueeze(0)) ** 2).mean((0, -1)))
        else:
            heads = torch.zeros((), device=rewards.device)

        total = (
            c.consistency_coef * consistency
            + c.reward_coef * reward_loss
            + c.value_coef * value_loss
            + c.termination_coef * termination
            + policy_loss
            + c.bc_coef * bc
            + heads
        )
        components = {
            "consistency": consistency.detach(),
            "reward": reward_loss.detach(),
            "value": value_loss.detach(),
            "termination": termination.detach(),
            "policy": policy_loss.detach(),
            "bc": bc.detach(),
            "uncertainty_heads": heads.detach(),
        }
        metrics = {
            "q_scale": float(self.q_scale),
            "q_pi": float(q_pi.detach().mean()),
            "entropy": float(entropy.detach().mean()),
        }
        return LossOutput(total, components, metrics)

    # -- hooks ------------------------------------------------------------------------------------
    def param_groups(self) -> list[dict[str, Any]]:
        """The encoder at ``enc_lr_scale`` times the learning rate, the rest at 1x (the target
        Q-ensemble is not trained)."""
        encoder = list(self.component("observation_encoder").parameters())
        ids = {id(p) for p in encoder} | {id(p) for p in self.q_target.parameters()}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        return [
            {"name": "encoder", "params": encoder, "lr_scale": self.config.enc_lr_scale},
            {"name": "model", "params": rest},
        ]

    def after_update(self) -> None:
        """EMA of the Q-ensemble into the target Q-ensemble (rate ``tau``)."""
        with torch.no_grad():
            online: list[torch.Tensor] = list(self.q.parameters())
            target: list[torch.Tensor] = list(self.q_target.parameters())
            torch._foreach_lerp_(target, online, self.config.tau)

    def set_data_statistics(self, stats: Mapping[str, Any]) -> None:
        """Standardise observations with ``obs_mean`` / ``obs_std`` ``[D]`` of the training data.

        The first call wins: a model whose statistics are set (also one loaded from disk) keeps
        them, because its weights were learned in those units.
        """
        if bool(self.statistics_set):
            return
        setter = getattr(self.component("observation_encoder"), "set_statistics", None)
        if setter is not None:
            setter(stats)
        self.statistics_set.fill_(True)
