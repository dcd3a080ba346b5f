"""Recurrent state-space models: DreamerV3 (categorical latents) and PlaNet (Gaussian latents).

State: ``{"deter": [B, D], "stoch": [B, S]}`` with ``S = groups x classes`` (one-hot samples,
flattened) for DreamerV3 and ``S = stoch`` for PlaNet. Features ``[B, D + S]`` feed the heads.

* ``transition`` (prior / imagination): ``h' = GRU(h, f(z, a))``, ``z' ~ prior(h')``.
* ``update`` (posterior / filter): ``h' = GRU(h, f(z, a))``, ``z' ~ posterior(h', embed(obs'))``.
* ``encode``: the posterior *mode* from the initial state and a first observation: a pure
  function of the observation, so dream-env resets and exported graphs are reproducible.
* ``decode``: observation, reward and continue probability from the features of a state; the
  reward of ``decode(transition(s, a))`` is the reward for taking ``a``.
* Vector observations are standardised with the training data's per-dimension mean and std
  (``set_data_statistics``, saved with the weights) before the encoder and the reconstruction
  loss, so a dimension with a small range weighs as much as one with a large range.
* ``decode(...).uncertainty``: ``sqrt(disagreement^2 + predicted squared error)``, from the
  ``uncertainty_heads`` observation predictors that read only the deterministic state
  (Plan2Explore-style: high where the model saw little data) and the ``error_heads`` (the
  model's expected one-step observation error, fitted after training to its own errors from
  fresh starts: high where it is inaccurate, also on the data); see ``RSSMConfig``.
* ``loss``: reconstruction of every observation, reward and continue of every step, plus the KL
  between posterior and prior (DreamerV3: balanced ``0.5 dyn + 0.1 rep`` with free nats 1;
  PlaNet: ``KL`` with free nats 3), averaged over real (unpadded) steps.

Layers follow the five-layer contract (``observation_encoder``, ``action_conditioner``,
``dynamics_model``, ``decoder``, ``rollout_executor``), so ``component_overrides`` replace them on
the loss path and on the rollout path alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...core.config import WorldModelConfig
from ...core.errors import ConfigError, ContractError
from ...core.latent import CategoricalLatent, GaussianLatent, StochasticLatentSpace
from ...core.model import WorldModel
from ...core.noise import NoiseSpec
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
from ..loop_grads import deferred_weight_grads
from .heads import DisagreementHeads
from .nets import ImageDecoder, ImageEncoder, LayerNormGRUCell, TwoHot, mlp, symexp, symlog


@dataclass
class RSSMConfig(WorldModelConfig):
    """Shared RSSM settings.

    Attributes:
        deter: GRU state size D.
        hidden: width of the MLP layers.
        layers: hidden layers of the encoder, decoder and heads (vector observations).
        latent: ``"categorical"`` (``groups x classes``, unimix) or ``"gaussian"`` (``stoch``).
        groups, classes, unimix: categorical latent.
        stoch, min_std: Gaussian latent.
        cnn_depth: channels of the first conv stage (image observations).
        symlog_obs: encode and reconstruct vector observations in symlog space.
        reward_head: ``"twohot"`` (255 symlog bins) or ``"mse"``.
        kl_dyn, kl_rep: weights of ``KL(sg(post) || prior)`` and ``KL(post || sg(prior))``.
        free_nats: KL terms below this are not penalised.
        obs_initial_state: start ``encode`` (and every training window) from a deterministic
            state computed from the first observation, ``tanh(W embed)``, instead of zeros; gives
            the first observation a continuous path into the state (zeros, as in the papers, when
            False).
        uncertainty_heads: K >= 2 heads (one hidden layer of ``hidden // 2``) that each predict the observation
            (symlog space; for images, the posterior's latent sample) from the deterministic state
            alone; their disagreement is ``decode(...).uncertainty`` (0: no uncertainty). They
            learn from detached states, so they never change the model they watch.
        error_heads: K heads (two hidden layers of ``hidden // 2``; 0: none) that each predict
            from the deterministic state the mean squared error, over the observation's
            dimensions, of the model's deterministic one-step observation prediction (the
            decoded mode of the prior), in dataset stds for vector observations and in units of
            the pixel range for images; the largest of the K is the expected error. They are
            fitted after training, on the frozen model (:meth:`RSSMWorldModel.fit_error_heads`,
            which the Trainer runs when training ends), to the model's errors from a fresh
            ``encode`` of each training observation (as dream resets start), by a Gaussian
            likelihood; the loss does not train them, and until they are fitted the uncertainty
            is the disagreement alone.
        error_head_steps: Adam steps of that fit (each head on 512 rows per step, drawn from
            ``24 x error_head_steps`` uniformly drawn training transitions).
    """

    deter: int = 512
    hidden: int = 512
    layers: int = 2
    latent: Literal["categorical", "gaussian"] = "categorical"
    groups: int = 32
    classes: int = 16
    unimix: float = 0.01
    stoch: int = 32
    min_std: float = 0.1
    cnn_depth: int = 32
    symlog_obs: bool = True
    reward_head: Literal["twohot", "mse"] = "twohot"
    kl_dyn: float = 0.5
    kl_rep: float = 0.1
    free_nats: float = 1.0
    obs_initial_state: bool = False
    uncertainty_heads: int = 5
    error_heads: int = 5
    error_head_steps: int = 12_000

    #: models saved before the error heads existed had none
    saved_defaults: ClassVar[dict[str, Any]] = {"error_heads": 0}

    def validate(self) -> None:
        super().validate()
        if self.uncertainty_heads == 1 or self.uncertainty_heads < 0:
            raise ConfigError(
                f"{type(self).__name__}.uncertainty_heads: expected 0 (none) or >= 2 (a "
                f"disagreement needs two heads), got {self.uncertainty_heads}."
            )
        if self.error_head_steps < 1:
            raise ConfigError(
                f"{type(self).__name__}.error_head_steps: expected >= 1, got "
                f"{self.error_head_steps}."
            )
        if self.error_heads < 0:
            raise ConfigError(
                f"{type(self).__name__}.error_heads: expected >= 0 (0: none), got "
                f"{self.error_heads}."
            )
        for name in ("deter", "hidden", "groups", "classes", "stoch", "cnn_depth"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"{type(self).__name__}.{name}: expected >= 1, got {getattr(self, name)}."
                )
        if self.layers < 0:
            raise ConfigError(f"{type(self).__name__}.layers: expected >= 0, got {self.layers}.")
        if self.obs_shape and len(self.obs_shape) not in (1, 3):
            raise ConfigError(
                f"{type(self).__name__}.obs_shape: expected (D,) vectors or (C, H, W) images, "
                f"got {self.obs_shape}."
            )

    @property
    def image(self) -> bool:
        return len(self.obs_shape) == 3

    def latent_space(self) -> StochasticLatentSpace:
        if self.latent == "categorical":
            return CategoricalLatent(self.groups, self.classes, self.unimix)
        return GaussianLatent(self.stoch, self.min_std)

    @property
    def feat_dim(self) -> int:
        return self.deter + self.latent_space().sample_dim


class RSSMEncoder(nn.Module):
    """Observations ``[B, *O]`` -> embeddings ``[B, E]`` (symlog MLP or CNN)."""

    def __init__(self, config: RSSMConfig) -> None:
        super().__init__()
        self.config = config
        if config.image:
            self.net: nn.Module = ImageEncoder(config.obs_shape, config.cnn_depth)
            self.out_dim = self.net.out_dim
        else:
            self.net = mlp(config.obs_shape[0], config.hidden, config.hidden, config.layers)
            self.out_dim = config.hidden

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.config.image:
            return self.net(obs)
        x = obs.float()
        return self.net(symlog(x) if self.config.symlog_obs else x)


class RSSMActionConditioner(nn.Module):
    """Action ``[B, A]`` -> features ``[B, hidden]`` for the recurrent step."""

    def __init__(self, config: RSSMConfig) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(config.action_dim, config.hidden), nn.LayerNorm(config.hidden)
        )

    def forward(
        self, action: torch.Tensor, conditions: ConditionPayload | None = None
    ) -> torch.Tensor:
        return self.net(action)


class RSSMDynamics(nn.Module):
    """The recurrent core: prior step (``forward``) and posterior step (``posterior``)."""

    def __init__(self, config: RSSMConfig) -> None:
        super().__init__()
        self.latent = config.latent_space()
        s = self.latent.sample_dim
        self.inp = nn.Sequential(nn.Linear(s, config.hidden), nn.LayerNorm(config.hidden))
        self.gru = LayerNormGRUCell(config.hidden, config.deter)
        self.prior = mlp(config.deter, config.hidden, self.latent.param_dim, 1)
        embed = RSSMEncoder(config).out_dim
        self.post = mlp(config.deter + embed, config.hidden, self.latent.param_dim, 1)
        self.init = nn.Linear(embed, config.deter) if config.obs_initial_state else None
        self.deter_size = config.deter

    def first_deter(self, embed: torch.Tensor) -> torch.Tensor:
        """Deterministic state ``[B, D]`` before the first observation ``embed [B, E]``."""
        if self.init is None:
            return embed.new_zeros(embed.shape[0], self.deter_size)
        return torch.tanh(self.init(embed))

    def recurrent(self, state: State, features: torch.Tensor) -> torch.Tensor:
        """``h' = GRU(h, SiLU(f(z) + f(a)))`` -> ``[B, D]``."""
        x = F.silu(self.inp(state["stoch"]) + features)
        return self.gru(x, state["deter"])

    def sample(
        self, params: torch.Tensor, deterministic: bool, noise: torch.Tensor | None
    ) -> torch.Tensor:
        return self.latent.sample(params, deterministic=deterministic, noise=noise).flatten(1)

    def forward(
        self,
        state: State,
        features: torch.Tensor,
        *,
        deterministic: bool = False,
        noise: Mapping[str, torch.Tensor] | None = None,
    ) -> State:
        deter = self.recurrent(state, features)
        params = self.prior(deter)
        stoch = self.sample(params, deterministic, None if noise is None else noise["stoch"])
        return State({"deter": deter, "stoch": stoch})

    def posterior_params(self, deter: torch.Tensor, embed: torch.Tensor) -> torch.Tensor:
        return self.post(torch.cat([deter, embed], -1))


class RSSMDecoder(nn.Module):
    """Features of a state -> observation, reward and continue predictions, and (with
    ``uncertainty_heads`` or ``error_heads``) the uncertainty: the root of the heads' variance
    plus the expected squared error."""

    def __init__(self, config: RSSMConfig) -> None:
        super().__init__()
        self.config = config
        feat = config.feat_dim
        if config.image:
            self.obs: nn.Module = ImageDecoder(feat, config.obs_shape, config.cnn_depth)
        else:
            self.obs = mlp(feat, config.hidden, config.obs_shape[0], config.layers)
        self.twohot = TwoHot() if config.reward_head == "twohot" else None
        self.reward = mlp(
            feat, config.hidden, len(self.twohot.bins) if self.twohot else 1, config.layers
        )
        self.cont = mlp(feat, config.hidden, 1, config.layers)
        self.heads = None
        if config.uncertainty_heads:
            # images: the posterior's latent sample (the embedding is thousands wide)
            target = config.latent_space().sample_dim if config.image else config.obs_shape[0]
            self.heads = DisagreementHeads(
                config.uncertainty_heads, config.deter, max(config.hidden // 2, 1), target
            )
        self.error_heads = (
            ErrorHeads(config.error_heads, config.deter, max(config.hidden // 2, 1))
            if config.error_heads
            else None
        )
        # zero-initialised reward output: predictions start at 0 (DreamerV3)
        out_layer = self.reward[-1]
        assert isinstance(out_layer, nn.Linear)
        nn.init.zeros_(out_layer.weight)
        nn.init.zeros_(out_layer.bias)

    def raw(self, feat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Head outputs before turning them into values: obs (symlog/pixel space), reward
        logits or value, continue logit."""
        return {
            "obs": self.obs(feat),
            "reward": self.reward(feat),
            "continue_logit": self.cont(feat).squeeze(-1),
        }

    def values(self, raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c = self.config
        if c.image:
            obs = (raw["obs"] + 0.5) * 255.0
        else:
            obs = symexp(raw["obs"]) if c.symlog_obs else raw["obs"]
        reward = self.twohot.mean(raw["reward"]) if self.twohot else raw["reward"].squeeze(-1)
        return {"obs": obs, "reward": reward, "continue": torch.sigmoid(raw["continue_logit"])}

    def forward(self, state: State) -> ModelOutput:
        feat = torch.cat([state["deter"], state["stoch"]], -1)
        return ModelOutput(
            self.values(self.raw(feat)), uncertainty=self.uncertainty(state["deter"])
        )

    def uncertainty(self, deter: torch.Tensor) -> torch.Tensor | None:
        """``[B, D] -> [B]``: ``sqrt(heads' variance + expected squared error)`` of the parts
        that are configured (the error heads once fitted); None without either."""
        parts = []
        if self.heads is not None:
            parts.append(self.heads.variance(deter))
        if self.error_heads is not None and self.error_heads.is_fitted:
            parts.append(self.error_heads.expected(deter))
        return torch.stack(parts).sum(0).sqrt() if parts else None


class RSSMWorldModel(HasErrorHeads, WorldModel):
    """Shared implementation of the RSSM families (see module docstring)."""

    config: RSSMConfig
    obs_mean: torch.Tensor
    obs_std: torch.Tensor
    statistics_set: torch.Tensor
    component_defaults: ClassVar[Mapping[str, Any]] = {
        "observation_encoder": RSSMEncoder,
        "action_conditioner": RSSMActionConditioner,
        "dynamics_model": RSSMDynamics,
        "decoder": RSSMDecoder,
    }

    def __init__(
        self,
        config: WorldModelConfig,
        component_overrides: Any = None,
        *,
        trust_imports: bool = True,
    ) -> None:
        super().__init__(config, component_overrides, trust_imports=trust_imports)
        self.latent = self.config.latent_space()
        # vector observations are standardised with the training data's statistics before the
        # encoder and the reconstruction loss (identity until set_data_statistics is called)
        size = 0 if self.config.image else self.config.obs_shape[0]
        self.register_buffer("obs_mean", torch.zeros(size))
        self.register_buffer("obs_std", torch.ones(size))
        self.register_buffer("statistics_set", torch.zeros((), dtype=torch.bool))

    def set_data_statistics(self, stats: Mapping[str, Any]) -> None:
        """Standardise vector observations with ``stats["obs_mean"]`` / ``stats["obs_std"]``
        (``[D]``; the Trainer passes its train split's), so that every dimension weighs the
        same in the reconstruction loss, whatever its scale. The first call wins: a model whose
        statistics are set (also one loaded from disk) keeps them. Images are not affected."""
        if self.config.image or bool(self.statistics_set):
            return
        for key in ("obs_mean", "obs_std"):
            value = stats.get(key)
            if value is None:
                raise ContractError(
                    f"set_data_statistics: expected {key!r} for vector observations, got "
                    f"keys {sorted(stats)}."
                )
            tensor = torch.as_tensor(np.asarray(value, np.float32)).reshape(-1)
            if tensor.shape != self.obs_mean.shape:
                raise ContractError(
                    f"set_data_statistics: {key} expected shape {list(self.obs_mean.shape)}, "
                    f"got {list(tensor.shape)}."
                )
            getattr(self, key).copy_(tensor.clamp(min=1e-6) if key == "obs_std" else tensor)
        self.statistics_set.fill_(True)

    def _standardise(self, obs: torch.Tensor) -> torch.Tensor:
        """Model-space observations: ``(obs - mean) / std`` for vectors, images unchanged."""
        if self.config.image:
            return obs
        return (obs.float() - self.obs_mean) / self.obs_std

    # typed handles on the layers (whichever default or override was built for each role)
    @property
    def _encoder(self) -> Any:
        return self.component("observation_encoder")

    @property
    def _conditioner(self) -> Any:
        return self.component("action_conditioner")

    @property
    def _dynamics(self) -> Any:
        return self.component("dynamics_model")

    @property
    def _decoder(self) -> Any:
        return self.component("decoder")

    # -- layout ---------------------------------------------------------------------------------
    def state_spec(self) -> dict[str, tuple[int | str, ...]]:
        return {"deter": (self.config.deter,), "stoch": (self.latent.sample_dim,)}

    def noise_spec(self) -> dict[str, NoiseSpec]:
        return {"stoch": self.latent.noise_spec}

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        device = device if device is not None else self.device
        return State(
            {
                "deter": torch.zeros(batch_size, self.config.deter, device=device),
                "stoch": torch.zeros(batch_size, self.latent.sample_dim, device=device),
            }
        )

    # -- the contract -------------------------------------------------------------------------
    def encode(self, obs: WorldModelInput | torch.Tensor) -> State:
        inp = self.check_obs(obs)
        embed = self._encoder(self._standardise(inp.obs))
        deter = self._dynamics.first_deter(embed)
        params = self._dynamics.posterior_params(deter, embed)
        return State({"deter": deter, "stoch": self._dynamics.sample(params, True, None)})

    def transition(
        self,
        state: State,
        action: ActionPayload | torch.Tensor,
        conditions: ConditionPayload | None = None,
        deterministic: bool = False,
        noise: Mapping[str, torch.Tensor] | None = None,
    ) -> State:
        self.check_state(state)
        features = self._conditioner(self.check_action(action, state.batch_size), conditions)
        return self._dynamics(state, features, deterministic=deterministic, noise=noise)

    def update(
        self,
        state: State,
        action: ActionPayload | torch.Tensor,
        obs: WorldModelInput | torch.Tensor,
    ) -> State:
        self.check_state(state)
        inp = self.check_obs(obs)
        features = self._conditioner(self.check_action(action, state.batch_size), inp.conditions)
        deter = self._dynamics.recurrent(state, features)
        params = self._dynamics.posterior_params(deter, self._encoder(self._standardise(inp.obs)))
        return State({"deter": deter, "stoch": self._dynamics.sample(params, False, None)})

    def decode(self, state: State) -> ModelOutput:
        out: ModelOutput = self._decoder(self.check_state(state))
        if not self.config.image:  # back from standardised units
            out.predictions["obs"] = out.obs * self.obs_std + self.obs_mean
        return out

    # -- training -------------------------------------------------------------------------------
    def _kl_loss(
        self, post: torch.Tensor, prior: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-step ``(loss, dyn, rep)`` ``[B]``."""
        c, lat = self.config, self.latent
        dyn = lat.kl(post.detach(), prior)
        rep = lat.kl(post, prior.detach())
        loss = c.kl_dyn * dyn.clamp(min=c.free_nats) + c.kl_rep * rep.clamp(min=c.free_nats)
        return loss, dyn, rep

    @staticmethod
    def _pixels(obs: torch.Tensor) -> torch.Tensor:
        """Model-space images in the decoder's units: uint8 frames to ``[-0.5, 0.5]``."""
        return obs.float() / 255.0 - 0.5 if obs.dtype == torch.uint8 else obs.float()

    def _obs_loss(self, pred: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """Per-sample reconstruction loss ``[B]`` (sum over observation dimensions)."""
        c = self.config
        if c.image:
            target = self._pixels(obs)
        else:
            target = symlog(obs.float()) if c.symlog_obs else obs.float()
        return ((pred - target) ** 2).flatten(1).sum(-1)

    def _sq_error(self, pred: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """Squared error ``[B]`` of decoder outputs ``pred [B, *O]`` (symlog/pixel space) against
        model-space observations ``obs [B, *O]``, averaged over the observation's dimensions, in
        dataset stds (vectors) or units of the pixel range (images)."""
        c = self.config
        if c.image:
            target, value = self._pixels(obs), pred
        else:
            target, value = obs.float(), symexp(pred) if c.symlog_obs else pred
        return ((value - target) ** 2).flatten(1).mean(-1)

    # -- the error heads, fitted after training -------------------------------------------------
    @torch.no_grad()
    def step_errors(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """For every real step ``t`` of ``batch`` (N of them): the deterministic state after
        ``encode(obs[t]) -> transition(action[t], deterministic=True)``, ``deter [N, D]``, and
        the squared error of that state's observation prediction against ``obs[t+1]``,
        ``[N]`` (averaged over the observation's dimensions; see ``RSSMConfig.error_heads``)."""
        self.check_batch(batch)
        real = batch.valid.flatten().bool()
        obs, nxt = (x.flatten(0, 1)[real] for x in (batch.obs[:, :-1], batch.obs[:, 1:]))
        state = self.transition(
            self.encode(obs), batch.actions.flatten(0, 1)[real], deterministic=True
        )
        pred = self._decoder.obs(torch.cat([state["deter"], state["stoch"]], -1))
        return state["deter"], self._sq_error(pred, self._standardise(nxt))

    def upgrade_weights(self, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Error heads saved when the loss trained them load as fitted heads on the raw state
        (:meth:`ErrorHeads.upgrade_weights`)."""
        weights = dict(weights)
        for name, module in self.named_modules():
            if isinstance(module, ErrorHeads):
                module.upgrade_weights(weights, f"{name}." if name else "")
        return weights

    def error_heads_module(self) -> ErrorHeads | None:
        heads = getattr(self._decoder, "error_heads", None)
        return heads if isinstance(heads, ErrorHeads) else None

    def loss(self, batch: Batch) -> LossOutput:
        self.check_batch(batch)
        dyn_model, dec = self._dynamics, self._decoder
        b, t_len = batch.batch_size, batch.seq_len
        obs_model = self._standardise(batch.obs)  # [B, T+1, *O]
        embed = self._encoder(obs_model.flatten(0, 1)).reshape(b, t_len + 1, -1)
        valid = batch.valid  # [B, T]
        obs_valid = torch.cat([torch.ones_like(valid[:, :1]), valid], 1)  # obs[t+1] real iff step t
        # the action features and the priors do not feed the recurrence: batched over B·T
        features = self._conditioner(batch.actions.flatten(0, 1), None).reshape(b, t_len, -1)
        # unbound once: indexing ``x[:, t]`` in the loop would make each step's backward write a
        # zero-filled gradient of the whole sequence and add it up, T times
        feature_steps, embed_steps = features.unbind(1), embed.unbind(1)
        with deferred_weight_grads(_loop_linears(dyn_model)):
            deter = dyn_model.first_deter(embed_steps[0])
            post = dyn_model.posterior_params(deter, embed_steps[0])
            stoch = dyn_model.sample(post, False, None)
            deters, stochs, posts = [deter], [stoch], [post]
            for t in range(t_len):
                state = State({"deter": deter, "stoch": stoch})
                deter = dyn_model.recurrent(state, feature_steps[t])
                post = dyn_model.posterior_params(deter, embed_steps[t + 1])
                stoch = dyn_model.sample(post, False, None)
                deters.append(deter)
                stochs.append(stoch)
                posts.append(post)
        deter_seq = torch.stack(deters, 1)  # [B, T+1, D]
        prior_seq = dyn_model.prior(deter_seq.flatten(0, 1))  # [B(T+1), P]
        feat = torch.cat([deter_seq, torch.stack(stochs, 1)], -1)  # [B, T+1, F]
        raw = dec.raw(feat.flatten(0, 1))
        obs_loss = self._obs_loss(raw["obs"], obs_model.flatten(0, 1)).reshape(b, t_len + 1)
        step_feat_raw = {k: v.reshape(b, t_len + 1, *v.shape[1:])[:, 1:] for k, v in raw.items()}
        if dec.twohot is not None:
            reward_loss = dec.twohot.loss(
                step_feat_raw["reward"].flatten(0, 1), batch.rewards.flatten()
            ).reshape(b, t_len)
        else:
            reward_loss = (step_feat_raw["reward"].squeeze(-1) - batch.rewards) ** 2
        cont_loss = F.binary_cross_entropy_with_logits(
            step_feat_raw["continue_logit"], batch.continues, reduction="none"
        )
        kl_loss, dyn, rep = self._kl_loss(torch.stack(posts, 1).flatten(0, 1), prior_seq)
        kl_loss, dyn, rep = (x.reshape(b, t_len + 1) for x in (kl_loss, dyn, rep))

        def mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return (x * mask).sum() / mask.sum().clamp(min=1.0)

        parts = {
            "obs": mean(obs_loss, obs_valid),
            "reward": mean(reward_loss, valid),
            "continue": mean(cont_loss, valid),
            "kl": mean(kl_loss, obs_valid),
        }
        heads = getattr(dec, "heads", None)
        if heads is not None:  # after each action, the heads predict what was observed
            if self.config.image:
                target = torch.stack(stochs[1:], 1)
            else:
                obs = obs_model[:, 1:]
                target = symlog(obs) if self.config.symlog_obs else obs
            head_loss = heads.loss(deter_seq[:, 1:].flatten(0, 1), target.flatten(0, 1)).reshape(
                b, t_len
            )
            parts["heads"] = mean(head_loss, valid)
        total = torch.stack(list(parts.values())).sum()
        metrics = {
            "kl_dyn": float(mean(dyn, obs_valid).detach()),
            "kl_rep": float(mean(rep, obs_valid).detach()),
        }
        return LossOutput(total, {k: v.detach() for k, v in parts.items()}, metrics)


#: layers with at least this many weights get deferred weight gradients in the observe loop;
#: below it the per-step bookkeeping costs more than the per-step outer products it saves
#: (CPU time of training steps on one thread, measured beside other jobs: 0.8x at 50k
#: parameters, 1.1x at 2M, 1.15-1.4x at 27M)
DEFER_MIN_WEIGHTS = 131_072


def _loop_linears(dynamics: Any) -> list[nn.Linear]:
    """The large Linear layers that :class:`RSSMDynamics` applies at every step of the observe
    loop (their weight gradients are formed once per sequence, see :mod:`..loop_grads`); none
    for other dynamics components."""
    if type(dynamics) is not RSSMDynamics:
        return []
    layers = [dynamics.inp, dynamics.gru, dynamics.post]
    return [
        m
        for layer in layers
        for m in layer.modules()
        if isinstance(m, nn.Linear) and m.weight.numel() >= DEFER_MIN_WEIGHTS
    ]


# -- the two registered families ----------------------------------------------------------------
@dataclass
class DreamerV3Config(RSSMConfig):
    """DreamerV3 (Hafner et al., 2023): categorical latents with 1% unimix, symlog MLPs, two-hot
    rewards, KL balancing 0.5 / 0.1 with free nats 1. Preset sizes are parameter counts for
    64x64x3 images and 6-dim actions (``proprio`` for 17-dim vectors; see README)."""

    presets: ClassVar[dict[str, dict[str, Any]]] = {
        # counts for 64x64x3 images, 6-dim actions (tests/test_rssm.py checks them)
        "tiny": dict(  # 0.96M; a quick error-head fit
            deter=128, hidden=96, layers=1, groups=16, classes=8, cnn_depth=12, error_head_steps=500
        ),
        "small": dict(deter=256, hidden=256, layers=2, groups=32, classes=16, cnn_depth=24),  # 5.4M
        "size12m": dict(deter=512, hidden=512, layers=2, groups=32, classes=16, cnn_depth=32),
        "size25m": dict(deter=1024, hidden=640, layers=3, groups=32, classes=24, cnn_depth=40),
        "size50m": dict(deter=1536, hidden=1024, layers=2, groups=32, classes=32, cnn_depth=48),
        # proprioceptive (vector) observations on a CPU budget: 1.7M for 17-dim Walker2d; starts
        # from an observation-conditioned state (on Walker2d-v5 medium, 4k steps: 1-step obs
        # nRMSE 0.23 instead of 0.37 from the zero state)
        "proprio": dict(
            deter=256, hidden=256, layers=2, groups=16, classes=16, obs_initial_state=True
        ),
    }
    default_preset: ClassVar[str | None] = "small"


@dataclass
class PlaNetConfig(RSSMConfig):
    """PlaNet (Hafner et al., 2019): Gaussian latents (30 dims, min std 0.1), 200-unit deter
    state, plain MSE reconstruction and reward, KL with free nats 3."""

    deter: int = 200
    hidden: int = 200
    latent: Literal["categorical", "gaussian"] = "gaussian"
    stoch: int = 30
    symlog_obs: bool = False
    reward_head: Literal["twohot", "mse"] = "mse"
    kl_dyn: float = 1.0
    kl_rep: float = 1.0  # with kl_dyn = 1: the gradients of one unbalanced KL(post || prior)
    free_nats: float = 3.0

    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": dict(deter=64, hidden=64, stoch=16, cnn_depth=8, error_head_steps=500),
        "paper": dict(deter=200, hidden=200, stoch=30, cnn_depth=32),  # 3.7M for 64x64x3
    }
    default_preset: ClassVar[str | None] = "paper"


@WorldModelRegistry.register("dreamerv3", DreamerV3Config, aliases=("dreamer",))
class DreamerV3Model(RSSMWorldModel):
    """DreamerV3 world model."""


@WorldModelRegistry.register("planet", PlaNetConfig)
class PlaNetModel(RSSMWorldModel):
    """PlaNet world model."""
