"""Probabilistic ensemble of MLPs (MBPO-style): the one-step model of offline model-based RL.

N members (default 7), each an MLP from the normalised ``(obs, action)`` to a Gaussian over the
normalised ``(obs' - obs, reward)`` (mean and log-variance, K = D + 1 outputs) plus a termination
logit. Only the ``elites`` members (default 5) with the lowest holdout loss are used to predict.

* State ``{"obs": [B, D], "reward": [B], "continue": [B], "epistemic": [B], "aleatoric": [B]}``:
  the observation itself, plus what was predicted for the transition *into* it, so ``decode``
  after ``transition`` gives the reward for the action taken. ``partitioned=True`` drops the two
  uncertainty keys (see below); with ``error_heads`` the state also carries ``uncertainty``
  ``[B]``.
* ``encode(obs)`` is the observation (reward 0, continue 1, uncertainty 0); ``update(state,
  action, obs)`` is the observed ``obs`` with the model's expected reward, continue probability
  and uncertainty for that transition.
* ``transition``: each batch row samples one elite (noise ``"member"``, uniform ``[B]``: elite
  ``floor(u * elites)`` in ascending member order) and draws ``mean + std * eps`` from it (noise
  ``"eps"``, standard normal ``[B, D + 1]``, in normalised units), so the same noise always
  gives the same trajectory. ``deterministic=True`` uses the mean of the elites' means and their
  mean termination probability.
* Uncertainty (normalised output units, over the K = D + 1 outputs, from the elites' predictions
  for the same input): ``epistemic = max_i ||mu_i - mean_j mu_j||_2`` (largest distance of a
  member's mean from the ensemble mean; ``ModelOutput.uncertainty``) and
  ``aleatoric = mean_i ||sigma_i||_2`` (mean norm of the predicted std). Both are also returned as
  ``predictions["epistemic"]`` / ``predictions["aleatoric"]`` so rollouts stack them.
* Error heads (``error_heads > 0``, as the shipped Walker2d card has): K small MLPs that predict
  the squared one-step observation error of the elites' mean prediction (averaged over the
  observation's dimensions, in dataset stds) from the transition's normalised input, the
  elites' mean prediction and the logs of ``epistemic`` and ``aleatoric``; fitted after
  training, on the frozen model (:meth:`EnsembleModel.fit_error_heads`, which the Trainer runs
  when training ends). The state then carries ``uncertainty`` (``decode(...).uncertainty``):
  ``sqrt(disagreement^2 + e)``, with ``e`` the largest of the K estimates and ``disagreement``
  the elites' spread in the same units (the largest RMS, over the observation's dimensions in
  dataset stds, of an elite's predicted change minus the elites' mean), as the RSSM families
  combine theirs; ``epistemic`` until the heads are fitted. The heads rank one-step errors,
  also under random actions on Walker2d (Spearman 0.67 against 0.40 for ``epistemic``;
  ``benchmarks/uncertainty_ranking.py``); the disagreement keeps the estimate growing where
  the members part, off the data, where the heads alone extrapolate low (a reward penalty on
  the heads alone let PPO exploit the Walker2d dream; README, "The demo").
* Forward: all members in one ``torch.baddbmm`` per layer (:mod:`.nets`). With
  ``partitioned=True`` a stochastic ``transition`` runs each elite only on the rows that sampled
  it (about ``elites`` times fewer FLOPs at large batches, see ``benchmarks/ensemble_forward.py``);
  the other elites' predictions are then not computed, so there is no uncertainty: the state has
  no ``epistemic`` / ``aleatoric`` keys and ``decode(...).uncertainty`` is None. Deterministic
  steps and ``update`` always run every elite.
* ``loss``: every valid (unpadded) step ``(obs[t], action[t]) -> (obs[t+1], reward[t],
  termination[t])`` of the batch is an independent transition (``seq_len=1`` is the natural
  setting). Per member: Gaussian NLL ``0.5 mean((mu - y)^2 / var + log var)`` over the K
  normalised targets (each term times ``sg(var)^nll_beta`` with ``nll_beta > 0``), plus the
  termination BCE; the loss sums the members. With ``loss_horizon`` H > 1 (batches of
  ``seq_len = H``) each member instead rolls every sequence from its first observation through
  the logged actions with its own mean predictions, and step k's terms compare the logged change
  with the member's prediction from its rolled state (a multi-step loss, gradients through the
  rollout; padded steps and those after them left out). The log-variance has
  soft bounds ``logvar = max - softplus(max - raw)``, ``logvar = min + softplus(logvar - min)``,
  learned as in PETS/MBPO (``logvar_bound_weight * (sum max_logvar - sum min_logvar)`` is added
  to the loss) or, with ``logvar_bound_weight=0``, fixed at ``max = 0.5``, ``min = -10``.
  Learned bounds can cross: under Adam the constant pull of that term moves ``max`` by about the
  learning rate per step wherever the likelihood does not push back, and once ``max < min`` the
  likelihood's gradient to ``max`` vanishes, so it keeps sinking and the variance of those
  dimensions is pinned at ``min`` for every input (13-18 of 18 output dimensions of the
  Walker2d, HalfCheetah and Walker2d medium-replay models after 30k steps). Pinned, the loss
  weighs every transition alike, as a squared error would; with fixed bounds the variance
  follows the data (its uncertainty ranks errors better) but the likelihood down-weights the
  hard transitions, and the one-step error of the mean grew (Walker2d mixed data, 30k steps:
  k = 1 nRMSE 0.153 against 0.118). So learned bounds stay the default. In training
  mode with ``bootstrap=True`` each member sees its own resample (with replacement) of the batch's
  transitions; in eval mode every member sees the same transitions, so the per-member losses
  ``components["member/<i>"]`` are comparable.
* Normalisation: input (obs, action) and target (obs change, reward) mean/std are buffers, set by
  :meth:`EnsembleModel.set_data_statistics` (the Trainer calls it with the provider's train-split
  statistics) and saved with the weights. Without statistics they are the identity.
* Elites: after each validation pass the Trainer calls :meth:`EnsembleModel.after_evaluation`,
  which keeps the ``elites`` members with the lowest mean holdout loss ``val/member/<i>``. Early
  stopping is the Trainer's (``early_stopping_patience`` on ``val/loss``, the sum of the members'
  holdout losses); without validation batches the elites stay members ``0 .. elites-1``.
* Termination: a learned head (BCE on ``terminations``). ``termination_fn`` replaces it with a
  known rule ``fn(obs [B, D], action [B, A], next_obs [B, D]) -> terminated [B]`` (bool or
  {0, 1}) as an ablation: a built-in name (:data:`TERMINATION_FUNCTIONS`) or ``"pkg.mod:func"``.
  The head is still trained either way; only the prediction changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...core.components import import_object
from ...core.config import WorldModelConfig
from ...core.errors import ConfigError, ContractError, unknown_name_message
from ...core.model import WorldModel
from ...core.noise import NoiseSpec, check_noise
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
from ..error_heads import ErrorHeads, HasErrorHeads
from .nets import EnsembleMLP, partition

#: Soft bounds of the log-variance: fixed, or the initial values of learned bounds.
INIT_MAX_LOGVAR, INIT_MIN_LOGVAR = 0.5, -10.0
#: Floor of standard deviations given to :meth:`EnsembleModel.set_data_statistics`.
MIN_STD = 1e-6
#: Keys :meth:`EnsembleModel.set_data_statistics` needs (``NormalizationStats.to_dict()`` names).
STATISTICS_KEYS = (
    "obs_mean",
    "obs_std",
    "action_mean",
    "action_std",
    "delta_mean",
    "delta_std",
    "reward_mean",
    "reward_std",
)

TerminationFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


# -- known termination rules (the ``termination_fn`` ablation) --------------------------------------
def walker2d_termination(
    obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor
) -> torch.Tensor:
    """Walker2d-v5 (default settings): terminated unless ``0.8 < z < 2`` and ``-1 < angle < 1``
    for ``z, angle = next_obs[:, 0], next_obs[:, 1]``. Returns bool ``[B]``."""
    z, angle = next_obs[:, 0], next_obs[:, 1]
    return ~((z > 0.8) & (z < 2.0) & (angle > -1.0) & (angle < 1.0))


def hopper_termination(
    obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor
) -> torch.Tensor:
    """Hopper-v5 (default settings): terminated unless ``z > 0.7``, ``-0.2 < angle < 0.2`` and
    every entry of ``next_obs[:, 1:]`` is within (-100, 100) (the observation clips velocities to
    +-10, so that bound only acts on positions). Returns bool ``[B]``."""
    z, angle, rest = next_obs[:, 0], next_obs[:, 1], next_obs[:, 1:]
    healthy = (z > 0.7) & (angle > -0.2) & (angle < 0.2) & ((rest > -100) & (rest < 100)).all(-1)
    return ~healthy


#: Built-in termination rules: name -> (function, observation size it is written for).
TERMINATION_FUNCTIONS: dict[str, tuple[TerminationFn, int]] = {
    "walker2d": (walker2d_termination, 17),
    "hopper": (hopper_termination, 11),
}


def resolve_termination_fn(spec: str, obs_dim: int, *, allow_imports: bool = True) -> TerminationFn:
    """The function named by ``spec`` (a :data:`TERMINATION_FUNCTIONS` name or ``"pkg.mod:func"``)."""
    if ":" not in spec:
        if spec not in TERMINATION_FUNCTIONS:
            raise ConfigError(
                unknown_name_message("termination_fn", spec, TERMINATION_FUNCTIONS)
                + " Or give an import path 'package.module:function'."
            )
        fn, dim = TERMINATION_FUNCTIONS[spec]
        if dim != obs_dim:
            raise ConfigError(
                f"termination_fn {spec!r} is written for {dim}-dim observations, "
                f"the model has {obs_dim}."
            )
        return fn
    if not allow_imports:
        raise ConfigError(
            f"termination_fn={spec!r} would import code named in a file; pass "
            "trust_imports=True if you trust its source."
        )
    fn = import_object(spec)
    if not callable(fn):
        raise ConfigError(f"termination_fn {spec!r} is a {type(fn).__name__}, expected a function.")
    result: TerminationFn = fn
    return result


#: what the loss compares: predictions, targets and weights of one batch (see ``loss``)
_Predictions = tuple[torch.Tensor, ...]


# -- configuration ------------------------------------------------------------------------------------
@dataclass
class EnsembleConfig(WorldModelConfig):
    """Probabilistic ensemble settings (vector observations only).

    Attributes:
        members: N, the number of MLPs.
        elites: how many members (lowest holdout loss) predict; ``1 <= elites <= members``.
        hidden: width of each member's hidden layers.
        layers: hidden layers per member (SiLU).
        nll_beta: beta of the beta-NLL (Seitzer et al., 2022): each target's NLL term is
            weighted by its predicted variance to the power beta (not differentiated), so that
            high-variance transitions are not down-weighted in fitting the mean (0: the plain
            Gaussian NLL; 1: the mean's gradient is that of a squared error).
        logvar_bound_weight: > 0: learned log-variance bounds, with this weight on
            ``sum max_logvar - sum min_logvar`` in the loss; 0: fixed bounds [-10, 0.5] (see
            the module docstring for the trade-off).
        bootstrap: each member trains on its own resample (with replacement) of every batch.
        partitioned: a stochastic ``transition`` runs each elite only on the rows that sampled
            it (faster at large batches; no uncertainty, see the module docstring).
        termination_fn: None (the learned head) or a known termination rule replacing it:
            ``"walker2d"``, ``"hopper"`` or ``"pkg.mod:func"`` (an ablation).
        loss_horizon: H, the steps each member predicts from its own predictions in the loss.
            1: every step of the batch is an independent one-step transition. H > 1: batches
            of H-step sequences (``seq_len = H``); each member rolls every sequence from its
            first observation through the logged actions with its own mean predictions
            (gradients through the whole rollout), and the loss is the NLL of each logged step
            given the rolled state (a multi-step loss, for rollouts that stay on the data
            longer).
        error_heads: K error heads (two hidden layers of ``hidden // 2``; 0: none, the
            default) whose expected error, once fitted after training, is combined with the
            elites' disagreement into the served uncertainty (see the module docstring). Needs
            ``partitioned=False``.
        error_head_steps: Adam steps of their fit (each head on 512 rows per step, drawn from
            ``24 x error_head_steps`` uniformly drawn training transitions).

    Presets (parameters for 17-dim observations and 6-dim actions, e.g. Walker2d):
    ``tiny`` 5 members of 2 x 64 (0.04M), ``small`` 7 of 4 x 200 as in MBPO (0.93M, the default),
    ``large`` 7 of 4 x 400 (3.54M).
    """

    members: int = 7
    elites: int = 5
    hidden: int = 200
    layers: int = 4
    logvar_bound_weight: float = 0.01
    nll_beta: float = 0.0
    bootstrap: bool = True
    partitioned: bool = False
    termination_fn: str | None = None
    loss_horizon: int = 1
    error_heads: int = 0
    error_head_steps: int = 12_000

    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": dict(members=5, elites=3, hidden=64, layers=2, error_head_steps=500),
        "small": dict(members=7, elites=5, hidden=200, layers=4),
        "large": dict(members=7, elites=5, hidden=400, layers=4),
    }
    default_preset: ClassVar[str | None] = "small"

    def validate(self) -> None:
        super().validate()
        name = type(self).__name__
        for key in ("members", "elites", "hidden", "layers", "loss_horizon", "error_head_steps"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{name}.{key}: expected >= 1, got {getattr(self, key)}.")
        if self.error_heads < 0:
            raise ConfigError(
                f"{name}.error_heads: expected >= 0 (0: none), got {self.error_heads}."
            )
        if self.error_heads and self.partitioned:
            raise ConfigError(
                f"{name}.error_heads: expected 0 with partitioned=True (a partitioned ensemble "
                f"serves no uncertainty), got {self.error_heads}."
            )
        if self.elites > self.members:
            raise ConfigError(
                f"{name}.elites: expected at most members={self.members}, got {self.elites}."
            )
        if not 0.0 <= self.nll_beta <= 1.0:
            raise ConfigError(f"{name}.nll_beta: expected a number in [0, 1], got {self.nll_beta}.")
        if self.logvar_bound_weight < 0:
            raise ConfigError(
                f"{name}.logvar_bound_weight: expected >= 0, got {self.logvar_bound_weight}."
            )
        if self.obs_shape and len(self.obs_shape) != 1:
            raise ConfigError(
                f"{name}.obs_shape: expected a vector shape (D,), got {self.obs_shape} "
                "(the ensemble predicts observation changes of vector observations)."
            )
        fn = self.termination_fn
        if fn is not None and ":" not in fn and fn not in TERMINATION_FUNCTIONS:
            raise ConfigError(
                unknown_name_message(f"{name}.termination_fn", fn, TERMINATION_FUNCTIONS)
                + " Or give an import path 'package.module:function'."
            )

    @property
    def obs_dim(self) -> int:
        return int(self.obs_shape[0])

    @property
    def target_dim(self) -> int:
        """K = D + 1: the observation change and the reward."""
        return self.obs_dim + 1


# -- statistics ---------------------------------------------------------------------------------------
def _stat(stats: Mapping[str, Any], key: str, size: int | None) -> torch.Tensor:
    value = stats[key]
    if value is None:
        raise ContractError(
            f"set_data_statistics: {key!r} is None; the ensemble needs vector observations."
        )
    t = torch.as_tensor(np.asarray(value, dtype=np.float32))
    expected = (size,) if size is not None else ()
    if tuple(t.shape) != expected:
        raise ContractError(
            f"set_data_statistics: {key!r} expected shape {list(expected)}, got {list(t.shape)}."
        )
    return t


def batch_statistics(batch: Batch) -> dict[str, Any]:
    """Normalisation statistics of a batch's valid transitions, in the layout of
    ``NormalizationStats.to_dict()`` (for training without a batch provider)."""
    valid = batch.valid.bool()
    obs, nxt = batch.obs[:, :-1][valid].double(), batch.obs[:, 1:][valid].double()
    acts, rew = batch.actions[valid].double(), batch.rewards[valid].double()

    def ms(x: torch.Tensor) -> tuple[list[float], list[float]]:
        return x.mean(0).tolist(), x.std(0, unbiased=False).clamp(min=MIN_STD).tolist()

    obs_mean, obs_std = ms(torch.cat([obs, nxt]))
    delta_mean, delta_std = ms(nxt - obs)
    action_mean, action_std = ms(acts)
    return {
        "obs_mean": obs_mean,
        "obs_std": obs_std,
        "delta_mean": delta_mean,
        "delta_std": delta_std,
        "action_mean": action_mean,
        "action_std": action_std,
        "reward_mean": float(rew.mean()),
        "reward_std": float(rew.std(unbiased=False).clamp(min=MIN_STD)),
    }


class _Normalizer(nn.Module):
    """``(x - mean) / std`` with ``mean``, ``std`` ``[F]`` buffers (identity until set)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, size: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(size))
        self.register_buffer("std", torch.ones(size))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.std

    def set(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean)
        self.std.copy_(std.clamp(min=MIN_STD))


# -- the five layers ----------------------------------------------------------------------------------
class EnsembleObsEncoder(_Normalizer):
    """Observations ``[B, D]`` -> normalised observations ``[B, D]`` (train-split mean/std)."""

    def __init__(self, config: EnsembleConfig) -> None:
        super().__init__(config.obs_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.normalise(obs)

    def set_statistics(self, stats: Mapping[str, Any]) -> None:
        n = self.mean.numel()
        self.set(_stat(stats, "obs_mean", n), _stat(stats, "obs_std", n))


class EnsembleActionConditioner(_Normalizer):
    """Actions ``[B, A]`` -> normalised actions ``[B, A]`` (conditions are not supported)."""

    def __init__(self, config: EnsembleConfig) -> None:
        super().__init__(config.action_dim)

    def forward(
        self, action: torch.Tensor, conditions: ConditionPayload | None = None
    ) -> torch.Tensor:
        if conditions is not None and conditions.tensors:
            raise ContractError(
                f"the ensemble takes no conditions, got keys {sorted(conditions.tensors)}."
            )
        return self.normalise(action)

    def set_statistics(self, stats: Mapping[str, Any]) -> None:
        n = self.mean.numel()
        self.set(_stat(stats, "action_mean", n), _stat(stats, "action_std", n))


class EnsembleDynamics(nn.Module):
    """The N members and their elites: ``(state, features [B, D + A], *, deterministic, noise)
    -> next State`` (``features`` are the normalised observation and action, concatenated).

    Buffers: ``target_mean`` / ``target_std`` ``[K]`` (obs change and reward), ``elite_idx``
    ``[elites]`` (ascending member indices), ``holdout_loss`` ``[N]`` (the last validation loss
    of each member; inf before any). With ``error_heads``, ``self.error_heads`` (see the module
    docstring; inputs from :meth:`error_inputs`) and the buffer ``obs_std`` ``[D]`` (the
    dataset's observation std, the units of the served uncertainty).
    """

    target_mean: torch.Tensor
    target_std: torch.Tensor
    elite_idx: torch.Tensor
    holdout_loss: torch.Tensor
    obs_std: torch.Tensor  # with error heads only

    def __init__(self, config: EnsembleConfig) -> None:
        super().__init__()
        self.config = config
        k = config.target_dim
        self.net = EnsembleMLP(
            config.members,
            config.obs_dim + config.action_dim,
            config.hidden,
            config.layers,
            2 * k + 1,
        )
        learned = config.logvar_bound_weight > 0  # else fixed (no gradient, no penalty)
        self.max_logvar = nn.Parameter(
            torch.full((config.members, 1, k), INIT_MAX_LOGVAR), requires_grad=learned
        )
        self.min_logvar = nn.Parameter(
            torch.full((config.members, 1, k), INIT_MIN_LOGVAR), requires_grad=learned
        )
        self.register_buffer("target_mean", torch.zeros(k))
        self.register_buffer("target_std", torch.ones(k))
        self.register_buffer("elite_idx", torch.arange(config.elites))
        self.register_buffer("holdout_loss", torch.full((config.members,), float("inf")))
        self.error_heads = (
            ErrorHeads(
                config.error_heads,
                config.obs_dim + config.action_dim + k + 2,
                max(config.hidden // 2, 1),
            )
            if config.error_heads
            else None
        )
        if config.error_heads:
            self.register_buffer("obs_std", torch.ones(config.obs_dim))

    # -- members ------------------------------------------------------------------------------------
    def heads(
        self, x: torch.Tensor, members: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x [N', R, D + A]`` -> ``(mean [N', R, K], logvar [N', R, K], termination logit
        [N', R])`` of ``members [N']`` (all N when None), log-variance softly bounded."""
        k = self.config.target_dim
        out = self.net(x, members).float()
        hi = self.max_logvar if members is None else self.max_logvar[members]
        lo = self.min_logvar if members is None else self.min_logvar[members]
        logvar = hi - F.softplus(hi - out[..., k : 2 * k])
        logvar = lo + F.softplus(logvar - lo)
        return out[..., :k], logvar, out[..., 2 * k]

    def elite_predictions(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Every elite on every row of ``features [B, D + A]``: ``(mean, logvar [E, B, K],
        termination logit [E, B], epistemic [B], aleatoric [B])`` (see the module docstring)."""
        c = self.config
        x = features.unsqueeze(0).expand(c.elites, features.shape[0], features.shape[1])
        mean, logvar, logit = self.heads(x, self.elite_idx)
        epistemic = (mean - mean.mean(0)).norm(dim=-1).amax(0)
        aleatoric = (0.5 * logvar).exp().norm(dim=-1).mean(0)
        return mean, logvar, logit, epistemic, aleatoric

    @staticmethod
    def error_inputs(
        features: torch.Tensor,
        mean: torch.Tensor,
        epistemic: torch.Tensor,
        aleatoric: torch.Tensor,
    ) -> torch.Tensor:
        """What the error heads read: ``features [B, D + A]``, the elites' mean prediction
        (``mean [E, B, K]`` averaged) and the logs of ``epistemic`` / ``aleatoric`` ``[B]``
        -> ``[B, D + A + K + 2]``."""
        spreads = torch.stack([epistemic, aleatoric], -1).clamp(min=1e-6).log()
        return torch.cat([features.float(), mean.mean(0), spreads], -1)

    def disagreement(self, mean: torch.Tensor) -> torch.Tensor:
        """The elites' spread in the error heads' units, from their normalised means
        ``[E, B, K]``: the largest RMS over the observation's dimensions, in dataset stds, of an
        elite's predicted change minus the elites' mean, ``[B]``."""
        d = self.config.obs_dim
        change = mean[..., :d] * (self.target_std[:d] / self.obs_std)
        return (change - change.mean(0)).pow(2).mean(-1).sqrt().amax(0)

    def normalise_target(self, delta: torch.Tensor, reward: torch.Tensor) -> torch.Tensor:
        """``delta [..., D]``, ``reward [...]`` -> normalised targets ``[..., K]``."""
        y = torch.cat([delta.float(), reward.float()[..., None]], -1)
        return (y - self.target_mean) / self.target_std

    def denormalise_target(self, y: torch.Tensor) -> torch.Tensor:
        """Normalised ``[..., K]`` -> ``(obs change, reward)`` in data units ``[..., K]``."""
        return y * self.target_std + self.target_mean

    def set_statistics(self, stats: Mapping[str, Any]) -> None:
        d = self.config.obs_dim
        mean = torch.cat([_stat(stats, "delta_mean", d), _stat(stats, "reward_mean", None)[None]])
        std = torch.cat([_stat(stats, "delta_std", d), _stat(stats, "reward_std", None)[None]])
        self.target_mean.copy_(mean)
        self.target_std.copy_(std.clamp(min=MIN_STD))
        if self.config.error_heads:
            self.obs_std.copy_(_stat(stats, "obs_std", d).clamp(min=MIN_STD))

    def select_elites(self, losses: torch.Tensor) -> None:
        """Keep the ``elites`` members with the lowest ``losses [N]`` (holdout losses)."""
        self.holdout_loss.copy_(losses)
        best = torch.argsort(losses.to(self.holdout_loss.device))[: self.config.elites]
        self.elite_idx.copy_(torch.sort(best).values)

    # -- one step -------------------------------------------------------------------------------------
    def _noise(
        self, batch: int, noise: Mapping[str, torch.Tensor] | None, like: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Elite slot ``[B]`` (long) and standard normal ``eps [B, K]``."""
        e, k = self.config.elites, self.config.target_dim
        if noise is None:
            slot = torch.randint(e, (batch,), device=like.device)
            eps = torch.randn(batch, k, device=like.device)
        else:
            slot = (noise["member"] * e).long().clamp(0, e - 1)
            eps = noise["eps"]
        return slot, eps.float()

    def forward(
        self,
        state: State,
        features: torch.Tensor,
        *,
        deterministic: bool = False,
        noise: Mapping[str, torch.Tensor] | None = None,
    ) -> State:
        c = self.config
        b, k = features.shape[0], c.target_dim
        epistemic = aleatoric = uncertainty = None
        if deterministic or not c.partitioned:
            mean, logvar, logit, epistemic, aleatoric = self.elite_predictions(features)
            if self.error_heads is not None:
                uncertainty = (
                    (
                        self.error_heads.expected(
                            self.error_inputs(features, mean, epistemic, aleatoric)
                        )
                        + self.disagreement(mean) ** 2
                    ).sqrt()
                    if self.error_heads.is_fitted
                    else epistemic
                )
            if deterministic:
                y, term = mean.mean(0), torch.sigmoid(logit).mean(0)
            else:
                slot, eps = self._noise(b, noise, features)
                rows = torch.arange(b, device=features.device)
                y = mean[slot, rows] + (0.5 * logvar[slot, rows]).exp() * eps
                term = torch.sigmoid(logit[slot, rows])
        else:  # each sampled elite runs on its own rows only
            slot, eps = self._noise(b, noise, features)
            dest, present, rows_per = partition(slot, c.elites)
            chunks = features.new_zeros(present.numel() * rows_per, features.shape[1])
            chunks.index_copy_(0, dest, features)
            # every elite present (the usual case): the elites buffer itself, whose gathered
            # weights the layers keep between calls
            members = self.elite_idx if present.numel() == c.elites else self.elite_idx[present]
            mean, logvar, logit = self.heads(chunks.view(present.numel(), rows_per, -1), members)
            mean, logvar = mean.reshape(-1, k)[dest], logvar.reshape(-1, k)[dest]
            y = mean + (0.5 * logvar).exp() * eps
            term = torch.sigmoid(logit.reshape(-1)[dest])
        out = self.denormalise_target(y)
        tensors = {
            "obs": state["obs"].float() + out[:, :-1],
            "reward": out[:, -1],
            "continue": 1.0 - term,
        }
        if not c.partitioned:
            assert epistemic is not None and aleatoric is not None
            tensors.update(epistemic=epistemic, aleatoric=aleatoric)
        if uncertainty is not None:
            tensors["uncertainty"] = uncertainty
        return State(tensors)


class EnsembleDecoder(nn.Module):
    """State -> ``ModelOutput``: the carried observation, reward and continue probability, and
    (without ``partitioned``) ``predictions["epistemic"/"aleatoric"]`` with ``uncertainty`` the
    state's ``uncertainty`` (with error heads) or ``epistemic``. No weights."""

    def __init__(self, config: EnsembleConfig) -> None:
        super().__init__()
        del config

    def forward(self, state: State) -> ModelOutput:
        preds = {"obs": state["obs"], "reward": state["reward"], "continue": state["continue"]}
        if "epistemic" not in state:
            return ModelOutput(preds)
        preds.update(epistemic=state["epistemic"], aleatoric=state["aleatoric"])
        served = state["uncertainty"] if "uncertainty" in state else state["epistemic"]
        return ModelOutput(preds, uncertainty=served)


# -- the family ---------------------------------------------------------------------------------------
@WorldModelRegistry.register("ensemble", EnsembleConfig, aliases=("mbpo",))
class EnsembleModel(HasErrorHeads, WorldModel):
    """Probabilistic MLP ensemble world model (see the module docstring)."""

    config: EnsembleConfig
    statistics_set: torch.Tensor
    component_defaults: ClassVar[Mapping[str, Any]] = {
        "observation_encoder": EnsembleObsEncoder,
        "action_conditioner": EnsembleActionConditioner,
        "dynamics_model": EnsembleDynamics,
        "decoder": EnsembleDecoder,
    }

    def __init__(
        self,
        config: WorldModelConfig,
        component_overrides: Any = None,
        *,
        trust_imports: bool = True,
    ) -> None:
        super().__init__(config, component_overrides, trust_imports=trust_imports)
        #: whether :meth:`set_data_statistics` has set the normalisation (saved with the weights)
        self.register_buffer("statistics_set", torch.zeros((), dtype=torch.bool))
        spec = self.config.termination_fn
        self.termination_fn: TerminationFn | None = (
            None
            if spec is None
            else resolve_termination_fn(spec, self.config.obs_dim, allow_imports=trust_imports)
        )

    @property
    def _dynamics(self) -> Any:
        return self.component("dynamics_model")

    @property
    def elite_indices(self) -> list[int]:
        """The members used for predictions, ascending."""
        return [int(i) for i in self._dynamics.elite_idx]

    # -- layout ---------------------------------------------------------------------------------------
    def state_spec(self) -> dict[str, tuple[int | str, ...]]:
        spec: dict[str, tuple[int | str, ...]] = {
            "obs": (self.config.obs_dim,),
            "reward": (),
            "continue": (),
        }
        if not self.config.partitioned:
            spec.update(epistemic=(), aleatoric=())
        if self.config.error_heads:
            spec["uncertainty"] = ()
        return spec

    def latent_keys(self) -> tuple[str, ...]:
        """The carried observation (the rest of the state is the last step's predictions)."""
        return ("obs",)

    def noise_spec(self) -> dict[str, NoiseSpec]:
        return {
            "member": NoiseSpec((), "uniform"),
            "eps": NoiseSpec((self.config.target_dim,), "normal"),
        }

    def _state_of(self, obs: torch.Tensor) -> State:
        zeros = obs.new_zeros(obs.shape[0])
        tensors = {"obs": obs, "reward": zeros, "continue": torch.ones_like(zeros)}
        if not self.config.partitioned:
            tensors.update(epistemic=zeros, aleatoric=zeros)
        if self.config.error_heads:
            tensors["uncertainty"] = zeros
        return State(tensors)

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        device = device if device is not None else self.device
        return self._state_of(torch.zeros(batch_size, self.config.obs_dim, device=device))

    # -- the contract -----------------------------------------------------------------------------------
    def _features(
        self, obs: torch.Tensor, action: torch.Tensor, conditions: ConditionPayload | None
    ) -> torch.Tensor:
        enc = self.component("observation_encoder")
        cond = self.component("action_conditioner")
        return torch.cat([enc(obs), cond(action, conditions)], -1)

    def _known_termination(self, obs: torch.Tensor, action: torch.Tensor, nxt: State) -> State:
        if self.termination_fn is None:
            return nxt
        done = self.termination_fn(obs, action, nxt["obs"])
        if tuple(done.shape) != (obs.shape[0],):
            raise ContractError(
                f"termination_fn {self.config.termination_fn!r}: expected a [B={obs.shape[0]}] "
                f"tensor, got shape {list(done.shape)}."
            )
        nxt.tensors["continue"] = 1.0 - done.to(nxt["reward"].dtype)
        return nxt

    def encode(self, obs: WorldModelInput | torch.Tensor) -> State:
        return self._state_of(self.check_obs(obs).obs.float())

    def transition(
        self,
        state: State,
        action: ActionPayload | torch.Tensor,
        conditions: ConditionPayload | None = None,
        deterministic: bool = False,
        noise: Mapping[str, torch.Tensor] | None = None,
    ) -> State:
        self.check_state(state)
        act = self.check_action(action, state.batch_size)
        if noise is not None:
            check_noise(
                self.noise_spec(), noise, (state.batch_size,), owner="EnsembleModel.transition"
            )
        features = self._features(state["obs"], act, conditions)
        nxt = self._dynamics(state, features, deterministic=deterministic, noise=noise)
        return self._known_termination(state["obs"], act, nxt)

    def update(
        self,
        state: State,
        action: ActionPayload | torch.Tensor,
        obs: WorldModelInput | torch.Tensor,
    ) -> State:
        self.check_state(state)
        inp = self.check_obs(obs)
        act = self.check_action(action, state.batch_size)
        features = self._features(state["obs"], act, inp.conditions)
        nxt = self._dynamics(state, features, deterministic=True)
        nxt.tensors["obs"] = inp.obs.float()
        return self._known_termination(state["obs"], act, nxt)

    def decode(self, state: State) -> ModelOutput:
        out: ModelOutput = self.component("decoder")(self.check_state(state))
        return out

    # -- training -------------------------------------------------------------------------------------
    def loss(self, batch: Batch) -> LossOutput:
        self.check_batch(batch)
        c, dyn = self.config, self._dynamics
        if c.loss_horizon > 1:
            mean, logvar, logit, y, t, weight = self._rollout_predictions(batch)
        else:
            mean, logvar, logit, y, t = self._one_step_predictions(batch)
            weight = torch.ones_like(t)
        nll_terms = 0.5 * ((mean - y) ** 2 * torch.exp(-logvar) + logvar)  # [N, M, K]
        if c.nll_beta > 0:  # beta-NLL
            nll_terms = nll_terms * torch.exp(c.nll_beta * logvar.detach())
        count = weight.sum(1).clamp(min=1.0)  # [N]
        nll = (nll_terms.mean(2) * weight).sum(1) / count  # [N]
        bce_terms = F.binary_cross_entropy_with_logits(logit, t, reduction="none")  # [N, M]
        bce = (bce_terms * weight).sum(1) / count  # [N]
        member = nll + bce
        bound = c.logvar_bound_weight * (dyn.max_logvar.sum() - dyn.min_logvar.sum())
        total = member.sum() + bound
        components = {
            "nll": nll.mean().detach(),
            "termination": bce.mean().detach(),
            "logvar_bound": bound.detach(),
        }
        components.update({f"member/{i}": v for i, v in enumerate(member.detach())})
        squared = ((mean - y).detach() ** 2).mean(2)  # [N, M]
        mse = float((squared * weight).sum() / weight.sum().clamp(min=1.0))
        return LossOutput(total, components, {"mse": mse})

    def _one_step_predictions(self, batch: Batch) -> _Predictions:
        """Every valid step as an independent transition (M of them, per member a bootstrap
        resample in training): ``(mean, logvar [N, M, K], logit [N, M], target [N, M, K],
        termination [N, M])``."""
        c, dyn = self.config, self._dynamics
        valid = batch.valid.bool()  # [B, T]
        obs, nxt = batch.obs[:, :-1][valid].float(), batch.obs[:, 1:][valid].float()  # [M, D]
        features = self._features(obs, batch.actions[valid], None)  # [M, D + A]
        target = dyn.normalise_target(nxt - obs, batch.rewards[valid])  # [M, K]
        term = batch.terminations[valid].float()  # [M]
        m, n = features.shape[0], c.members
        if self.training and c.bootstrap:
            idx = torch.randint(m, (n, m), device=features.device)  # a resample per member
            x, y, t = features[idx], target[idx], term[idx]
        else:
            x = features.unsqueeze(0).expand(n, *features.shape)
            y, t = target.unsqueeze(0).expand(n, *target.shape), term.unsqueeze(0).expand(n, m)
        mean, logvar, logit = dyn.heads(x)  # [N, M, K], [N, M, K], [N, M]
        return mean, logvar, logit, y, t

    def _rollout_predictions(self, batch: Batch) -> _Predictions:
        """Each member rolls each of the B sequences (per member a bootstrap resample of them
        in training) from its first observation with its own mean predictions: ``(mean, logvar
        [N, B*T, K], logit [N, B*T], target [N, B*T, K], termination [N, B*T], weight
        [N, B*T])``, the target of step k the logged change from the rolled state at k and the
        weight 1 up to the sequence's first invalid (padded) step."""
        c, dyn = self.config, self._dynamics
        b, steps = batch.valid.shape
        if steps != c.loss_horizon:
            raise ContractError(
                f"EnsembleModel.loss: loss_horizon={c.loss_horizon} needs batches of "
                f"seq_len={c.loss_horizon}, got seq_len={steps}."
            )
        n, d = c.members, c.obs_dim
        device = batch.obs.device
        if self.training and c.bootstrap:
            idx = torch.randint(b, (n, b), device=device)  # a resample of sequences per member
        else:
            idx = torch.arange(b, device=device).expand(n, b)
        obs = batch.obs.float()[idx]  # [N, B, T + 1, D]
        actions, rewards = batch.actions.float()[idx], batch.rewards.float()[idx]
        weight = torch.cumprod(batch.valid.float()[idx], dim=2)  # [N, B, T]
        state = obs[:, :, 0]  # [N, B, D]
        outputs: list[tuple[torch.Tensor, ...]] = []
        for k in range(steps):
            mean, logvar, logit = dyn.heads(self._features(state, actions[:, :, k], None))
            y = dyn.normalise_target(obs[:, :, k + 1] - state, rewards[:, :, k])
            outputs.append((mean, logvar, logit, y))
            state = state + dyn.denormalise_target(mean)[..., :d]
        mean, logvar, logit, y = (
            torch.stack(x, 2).flatten(1, 2) for x in zip(*outputs, strict=True)
        )
        term = batch.terminations.float()[idx].flatten(1, 2)
        return mean, logvar, logit, y, term, weight.flatten(1, 2)

    # -- hooks ----------------------------------------------------------------------------------------
    def set_data_statistics(self, stats: Mapping[str, Any]) -> None:
        """Set the input and target normalisation from dataset statistics (keys of
        ``NormalizationStats.to_dict()``: ``obs_mean/std [D]``, ``action_mean/std [A]``,
        ``delta_mean/std [D]``, ``reward_mean/std``).

        The first call wins: a model whose statistics are set (also one loaded from disk) keeps
        them, because its weights were learned in those units.
        """
        if bool(self.statistics_set):
            return
        missing = [k for k in STATISTICS_KEYS if k not in stats]
        if missing:
            raise ContractError(
                f"set_data_statistics: missing key(s) {missing}; expected {list(STATISTICS_KEYS)}, "
                f"got {sorted(stats)}."
            )
        for role in ("observation_encoder", "action_conditioner", "dynamics_model"):
            setter = getattr(self.component(role), "set_statistics", None)
            if setter is not None:
                setter(stats)
        self.statistics_set.fill_(True)

    def error_heads_module(self) -> ErrorHeads | None:
        heads = getattr(self._dynamics, "error_heads", None)
        return heads if isinstance(heads, ErrorHeads) else None

    @torch.no_grad()
    def step_errors(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """For every real step ``t`` of ``batch`` (N of them): what the error heads read for
        the transition ``(obs[t], action[t])`` (:meth:`EnsembleDynamics.error_inputs`,
        ``[N, D + A + K + 2]``) and the squared error of the elites' mean prediction against
        ``obs[t+1]``, averaged over the observation's dimensions in dataset stds, ``[N]``."""
        self.check_batch(batch)
        dyn = self._dynamics
        valid = batch.valid.bool()  # [B, T]
        obs, nxt = batch.obs[:, :-1][valid].float(), batch.obs[:, 1:][valid].float()  # [N, D]
        features = self._features(obs, batch.actions[valid], None)
        mean, _, _, epistemic, aleatoric = dyn.elite_predictions(features)
        pred = obs + dyn.denormalise_target(mean.mean(0))[:, :-1]
        sq_error = ((pred - nxt) / dyn.obs_std).pow(2).mean(-1)
        return dyn.error_inputs(features, mean, epistemic, aleatoric), sq_error

    def after_evaluation(self, metrics: Mapping[str, float]) -> None:
        """Pick the elites: the members with the lowest mean holdout loss ``val/member/<i>``."""
        keys = [f"val/member/{i}" for i in range(self.config.members)]
        missing = [k for k in keys if k not in metrics]
        if missing:
            raise ContractError(
                f"after_evaluation: expected per-member holdout losses {keys}, missing {missing}."
            )
        self._dynamics.select_elites(torch.tensor([float(metrics[k]) for k in keys]))
