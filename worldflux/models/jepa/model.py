"""JEPA-style latent world model (as V-JEPA 2-AC, PLDM and DINO-WM plan with), the family of the
``jepa`` name: an encoder and an action-conditioned predictor in embedding space, trained without
reconstructing observations, for planning towards goal observations in the embedding.

Layers (D = ``embed_dim``, L = ``history``, A = action size):

* ``observation_encoder``: observations -> embeddings ``[B, D]``. Vectors ``[B, O]``
  (standardised with the training data's statistics) go through an MLP (LayerNorm + Mish);
  images ``uint8 [B, C, H, W]`` (pixel/255, minus the training data's mean frame, divided by each
  channel's standard deviation around it; pixel/255 - 0.5 before statistics are set) through a
  CNN of four stride-2 convolutions and a linear layer. Standardising images matters here: in a
  static scene frames differ only where something moves, a freshly initialised CNN maps them to
  nearly one embedding (std 3e-4 across two-rooms frames when scaled by 1/255 alone), and
  VICReg's variance term cannot pull them apart from there. A user's own pretrained encoder is a component override of
  this role (the EMA target copies whatever encoder the model was built with).
* ``dynamics_model``: the predictor ``z_{t+1} = z_t + f([z_{t-L+1}, ..., z_t], a_t)`` (an MLP over
  the last L embeddings and the action), with a reward head ``R(z_t, a_t)`` and a termination head
  ``T(z_{t+1})`` (a logit) that learn on detached embeddings, so the embedding stays
  self-supervised.
* ``decoder``: state -> ``ModelOutput`` with ``reward`` and ``continue`` (**no observation
  decoder**: dreams serve this family in latent-observation mode, and planners use its
  embedding for goal distances), and as ``uncertainty`` the disagreement of
  ``uncertainty_heads`` small predictors of the next embedding, trained on detached inputs
  against the target embeddings (as TD-MPC2's heads here; Plan2Explore's latent disagreement).
* Not a layer of the contract: ``target_encoder``, an EMA copy of the encoder (rate ``tau``,
  :meth:`after_update`) that gives the prediction targets.

State ``{"z": [B, D], "past": [B, L - 1, D] (L > 1 only), "reward": [B], "continue": [B],
"uncertainty": [B] (with heads)}``:
the newest embedding, the L - 1 before it (oldest first), and what was predicted for the
transition into it. ``encode`` fills the past with the observation's own embedding; ``update``
shifts the window and puts the new observation's embedding in. The latent features
(``latent_keys``) are ``z`` alone. Deterministic (no ``noise_spec``).

Loss on a batch of sequences (T steps), every term masked to real steps:

* **teacher-forced prediction**: ``||f(window of online embeddings at t, a_t) - sg(target(o_{t+1}))||^2``
  (mean over D) for every t;
* **rollout prediction** (``rollout_coef``): the same with the predictor fed its own
  predictions from ``z_0 = enc(o_0)``, open loop over ``rollout_steps`` steps (all T by default;
  V-JEPA 2-AC adds such a short rollout to teacher forcing), so that multi-step plans stay on
  the embedding's manifold;
* **anti-collapse** (VICReg's variance and covariance terms, as PLDM): ``var_coef`` x the mean
  hinge ``max(0, 1 - std_d)`` of each embedding dimension over the batch, and ``cov_coef`` x the
  sum of squared off-diagonal covariances / D, on the online embeddings of every frame. The EMA
  target alone (BYOL's stop-gradient) does not stop a predictor-and-encoder pair from shrinking
  the embedding when the encoder is trained from scratch; VICReg makes collapse cost loss,
  and the EMA target keeps the targets slow-moving. The loss components also carry ``embed_std`` (the mean
  per-dimension std) and ``embed_rank`` (the effective rank, exp of the entropy of the normalised
  singular values), which fall towards 0 and 1 on collapse, so training logs show it
  (``train/embed_std``, ``val/embed_rank``); they are diagnostics, not added to the loss;
* **temporal smoothness** (``smooth_coef``, as PLDM): ``||enc(o_{t+1}) - enc(o_t)||^2`` (mean
  over D) for every step. With the variance term this is a Laplacian-eigenmap objective:
  consecutive frames close, all frames spread out, so distances between embeddings grow with
  the number of steps between observations, which is what goal planning minimises. Without
  it the embedding only orders nearby observations (measured on the two rooms: the distance
  to a goal 1 unit away stays flat or rises over the first half of the straight path to it);
* reward MSE and termination BCE of the heads, and the uncertainty heads' MSE to the target
  embeddings (all on detached inputs).
"""

from __future__ import annotations

import copy
import itertools
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
from .._statistics import copy_image_statistics, copy_obs_statistics
from ..tdmpc2.nets import NormedEnsemble

#: Floor of the observation standard deviations given to :meth:`JEPAModel.set_data_statistics`.
MIN_STD = 1e-6
#: Floor of the image channels' standard deviations (pixel / 255 units).
MIN_IMAGE_STD = 1e-3


@dataclass
class JEPAConfig(WorldModelConfig):
    """JEPA settings.

    Attributes:
        embed_dim: D, size of the embedding.
        hidden_dim: width of the hidden layers (vector encoder, predictor, heads).
        history: L, embeddings the predictor sees (1: the newest only).
        cnn_depth: channels of the first convolution of the image encoder (doubled per layer).
        tau: EMA rate of the target encoder.
        rollout_coef: weight of the open-loop rollout prediction loss (0: teacher forcing only).
        rollout_steps: steps of that rollout from the first frame (0: the whole sequence; long
            sequences make it backpropagate through as many predictor calls).
        var_coef, cov_coef: weights of VICReg's variance and covariance terms.
        smooth_coef: weight of the temporal smoothness of consecutive embeddings (0: off).
        reward_coef, termination_coef: weights of the heads' losses.
        uncertainty_heads: small predictors (``hidden_dim / 2`` wide) of the next embedding from
            the detached window and action; their disagreement is ``decode(...).uncertainty``
            (0: none, else >= 2).

    Presets: ``tiny`` (tests), ``small`` (the default) and ``base``.
    """

    embed_dim: int = 32
    hidden_dim: int = 256
    history: int = 1
    cnn_depth: int = 16
    tau: float = 0.01
    rollout_coef: float = 1.0
    rollout_steps: int = 0
    var_coef: float = 1.0
    cov_coef: float = 0.04
    smooth_coef: float = 10.0
    reward_coef: float = 1.0
    termination_coef: float = 1.0
    uncertainty_heads: int = 5

    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": dict(embed_dim=16, hidden_dim=64, cnn_depth=8),
        "small": dict(embed_dim=32, hidden_dim=256, cnn_depth=16),
        "base": dict(embed_dim=64, hidden_dim=512, cnn_depth=32, history=3),
    }
    default_preset: ClassVar[str | None] = "small"

    def validate(self) -> None:
        super().validate()
        name = type(self).__name__
        for key in ("embed_dim", "hidden_dim", "history", "cnn_depth"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{name}.{key}: expected >= 1, got {getattr(self, key)}.")
        if self.rollout_steps < 0:
            raise ConfigError(
                f"{name}.rollout_steps: expected >= 0 (0: the whole sequence), got "
                f"{self.rollout_steps}."
            )
        if len(self.obs_shape) == 3 and min(self.obs_shape[1:]) < 16:
            raise ConfigError(
                f"{name}.obs_shape: expected images of at least 16 x 16 (four stride-2 "
                f"convolutions), got {self.obs_shape}."
            )
        if not 0.0 < self.tau <= 1.0:
            raise ConfigError(f"{name}.tau: expected in (0, 1], got {self.tau}.")
        for key in (
            "rollout_coef",
            "var_coef",
            "cov_coef",
            "smooth_coef",
            "reward_coef",
            "termination_coef",
        ):
            if getattr(self, key) < 0:
                raise ConfigError(f"{name}.{key}: expected >= 0, got {getattr(self, key)}.")
        if self.uncertainty_heads < 0 or self.uncertainty_heads == 1:
            raise ConfigError(
                f"{name}.uncertainty_heads: expected 0 (none) or >= 2 (their disagreement is the "
                f"uncertainty), got {self.uncertainty_heads}."
            )
        if self.obs_shape and len(self.obs_shape) not in (1, 3):
            raise ConfigError(
                f"{name}.obs_shape: expected a vector (O,) or an image (C, H, W), got "
                f"{self.obs_shape}."
            )


def _mlp(sizes: list[int]) -> nn.Sequential:
    """``sizes[0] -> ... -> sizes[-1]``: Linear + LayerNorm + Mish between, a plain Linear last."""
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes[:-1]):
        layers += [nn.Linear(a, b), nn.LayerNorm(b), nn.Mish()]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*layers)


# -- layers -----------------------------------------------------------------------------------------
class JEPAEncoder(nn.Module):
    """Observations -> embeddings ``[B, D]``: vectors ``[B, O]`` through an MLP (standardised
    with the data's statistics once set), images ``[B, C, H, W]`` through a CNN."""

    obs_mean: torch.Tensor
    obs_std: torch.Tensor
    image_mean: torch.Tensor
    image_std: torch.Tensor

    def __init__(self, config: JEPAConfig) -> None:
        super().__init__()
        c = config
        shape = tuple(int(s) for s in c.obs_shape)
        self.image = len(shape) == 3
        if self.image:
            depth, channels, layers = c.cnn_depth, shape[0], []
            for i in range(4):
                layers += [nn.Conv2d(channels, depth * 2**i, 4, stride=2, padding=1), nn.ReLU()]
                channels = depth * 2**i
            self.conv = nn.Sequential(*layers, nn.Flatten())
            with torch.no_grad():
                flat = self.conv(torch.zeros(1, *shape)).shape[1]
            self.head = nn.Linear(flat, c.embed_dim)
            size = 1
            # pixel/255 - 0.5 until the data's statistics are set
            self.register_buffer("image_mean", torch.full(shape, 0.5))
            self.register_buffer("image_std", torch.ones(shape[0]))
        else:
            self.net = _mlp([shape[0], c.hidden_dim, c.hidden_dim, c.embed_dim])
            size = shape[0]
        self.register_buffer("obs_mean", torch.zeros(size))
        self.register_buffer("obs_std", torch.ones(size))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.image:
            x = obs.float() / 255.0 if obs.dtype == torch.uint8 else obs.float()
            x = (x - self.image_mean) / self.image_std[:, None, None]
            out: torch.Tensor = self.head(self.conv(x))
            return out
        out = self.net((obs.float() - self.obs_mean) / self.obs_std)
        return out

    def set_statistics(self, stats: Mapping[str, Any]) -> None:
        """Standardisation of vector observations (``obs_mean`` / ``obs_std`` ``[O]``) or of
        images (``image_mean [C, H, W]`` and ``image_std [C]``, pixel / 255 units).

        Raises:
            ContractError: a key missing, or of another shape than expected.
        """
        if self.image:
            copy_image_statistics(stats, self.image_mean, self.image_std, min_std=MIN_IMAGE_STD)
            return
        copy_obs_statistics(
            stats, self.obs_mean, self.obs_std, min_std=MIN_STD, hint="for vector observations"
        )


class JEPAPredictor(nn.Module):
    """The action-conditioned predictor and the reward and termination heads.

    ``forward(state, features [B, L * D + A]) -> State``: ``features`` is the window of the last L
    embeddings (oldest first, flattened) and the action; the result is the next state with the
    predicted embedding, the shifted window, the step's reward and its continue probability.
    Deterministic: ``deterministic`` changes nothing, ``noise`` must be None.
    """

    def __init__(self, config: JEPAConfig) -> None:
        super().__init__()
        c = config
        self.embed_dim, self.history = c.embed_dim, c.history
        window = c.history * c.embed_dim
        self.net = _mlp([window + c.action_dim, c.hidden_dim, c.hidden_dim, c.embed_dim])
        self.reward = _mlp([c.embed_dim + c.action_dim, c.hidden_dim, 1])
        self.termination = _mlp([c.embed_dim, c.hidden_dim, 1])
        self.heads = (
            NormedEnsemble(
                c.uncertainty_heads,
                window + c.action_dim,
                max(c.hidden_dim // 2, 1),
                2,
                c.embed_dim,
            )
            if c.uncertainty_heads
            else None
        )

    def disagreement(self, features: torch.Tensor) -> torch.Tensor:
        """``features [B, L * D + A]`` -> ``[B]``: ``sqrt(mean_d var_k head_k(features)_d)``."""
        assert self.heads is not None
        predictions = self.heads(features.detach().float())  # [K, B, D]
        return predictions.var(0, unbiased=False).mean(-1).sqrt()

    def next(self, features: torch.Tensor) -> torch.Tensor:
        """``[N, L * D + A]`` -> the next embedding ``[N, D]`` (residual on the newest)."""
        d, window = self.embed_dim, self.history * self.embed_dim
        newest = features[:, window - d : window]
        out: torch.Tensor = newest + self.net(features)
        return out

    def forward(
        self,
        state: State,
        features: torch.Tensor,
        *,
        deterministic: bool = False,
        noise: Mapping[str, torch.Tensor] | None = None,
    ) -> State:
        if noise:
            raise ContractError(
                f"JEPAPredictor is deterministic: expected no noise, got keys {sorted(noise)}."
            )
        d, window = self.embed_dim, self.history * self.embed_dim
        z = self.next(features)
        za = torch.cat([features[:, window - d : window], features[:, window:]], -1)
        reward = self.reward(za).squeeze(-1)
        cont = 1.0 - torch.sigmoid(self.termination(z).squeeze(-1))
        tensors = {"z": z, "reward": reward, "continue": cont}
        if self.heads is not None:
            tensors["uncertainty"] = self.disagreement(features)
        if self.history > 1:
            tensors["past"] = features[:, d:window].view(-1, self.history - 1, d)
        return State(tensors)


class JEPADecoder(nn.Module):
    """State -> ``ModelOutput`` with the predicted ``reward`` and ``continue`` (no observation),
    and the heads' disagreement as ``uncertainty`` where the state carries it. No weights."""

    def __init__(self, config: JEPAConfig) -> None:
        super().__init__()
        del config

    def forward(self, state: State) -> ModelOutput:
        preds = {"reward": state["reward"], "continue": state["continue"]}
        if "uncertainty" not in state:
            return ModelOutput(preds)
        return ModelOutput(preds, uncertainty=state["uncertainty"])


def effective_rank(embeddings: torch.Tensor) -> torch.Tensor:
    """exp(entropy of the normalised singular values) of centred ``[N, D]`` embeddings: D when
    every direction is used equally, 1 when they lie on a line."""
    centred = embeddings - embeddings.mean(0)
    values = torch.linalg.svdvals(centred.float())
    p = values / values.sum().clamp(min=1e-12)
    return torch.exp(-(p * torch.log(p.clamp(min=1e-12))).sum())


# -- the model --------------------------------------------------------------------------------------
@WorldModelRegistry.register("jepa", JEPAConfig)
class JEPAModel(WorldModel):
    """JEPA-style latent world model (module docstring)."""

    config: JEPAConfig
    decodes_observations: ClassVar[bool] = False
    statistics_set: torch.Tensor
    component_defaults: ClassVar[Mapping[str, Any]] = {
        "observation_encoder": JEPAEncoder,
        "dynamics_model": JEPAPredictor,
        "decoder": JEPADecoder,
    }

    def __init__(
        self,
        config: WorldModelConfig,
        component_overrides: Any = None,
        *,
        trust_imports: bool = True,
    ) -> None:
        super().__init__(config, component_overrides, trust_imports=trust_imports)
        encoder = self.component("observation_encoder")
        c = self.config
        dtype = torch.uint8 if len(c.obs_shape) == 3 else torch.float32
        with torch.no_grad():
            out = encoder(torch.zeros(2, *c.obs_shape, dtype=dtype))
        if tuple(out.shape) != (2, c.embed_dim):
            raise ConfigError(
                f"JEPAModel.observation_encoder: expected embeddings [B, embed_dim={c.embed_dim}] "
                f"from observations [B, *{list(c.obs_shape)}], got {list(out.shape)} (set "
                "embed_dim to the encoder's output size)."
            )
        self.target_encoder = copy.deepcopy(encoder)
        self.target_encoder.requires_grad_(False)
        #: whether :meth:`set_data_statistics` has set the normalisation (saved with the weights)
        self.register_buffer("statistics_set", torch.zeros((), dtype=torch.bool))

    # -- layout -----------------------------------------------------------------------------------
    def state_spec(self) -> dict[str, tuple[int | str, ...]]:
        c = self.config
        spec: dict[str, tuple[int | str, ...]] = {"z": (c.embed_dim,)}
        if c.history > 1:
            spec["past"] = (c.history - 1, c.embed_dim)
        spec.update({"reward": (), "continue": ()})
        if c.uncertainty_heads:
            spec["uncertainty"] = ()
        return spec

    def latent_keys(self) -> tuple[str, ...]:
        """The newest embedding (what goal distances are measured in)."""
        return ("z",)

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """Zero embeddings (no observation seen), reward 0, continue 1."""
        where = self.device if device is None else device
        return self._state_of(torch.zeros(batch_size, self.config.embed_dim, device=where))

    def _state_of(self, z: torch.Tensor) -> State:
        """The state of embeddings ``z`` seen, not predicted: the window filled with ``z``."""
        c = self.config
        zeros = z.new_zeros(z.shape[0])
        tensors = {"z": z, "reward": zeros, "continue": torch.ones_like(zeros)}
        if c.uncertainty_heads:
            tensors["uncertainty"] = zeros
        if c.history > 1:
            tensors["past"] = z.unsqueeze(1).expand(-1, c.history - 1, -1).contiguous()
        return State(tensors)

    def _window(self, state: State) -> torch.Tensor:
        """``[B, L * D]``: the past and the newest embedding, oldest first."""
        if self.config.history == 1:
            return state["z"]
        return torch.cat([state["past"].flatten(1), state["z"]], 1)

    def _encode(self, obs: torch.Tensor) -> torch.Tensor:
        z: torch.Tensor = self.component("observation_encoder")(obs)
        return z

    # -- the contract -----------------------------------------------------------------------------
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
        """Deterministic step in embedding space (``deterministic`` changes nothing; ``noise``
        must be empty)."""
        self.check_state(state)
        act = self.check_action(action, state.batch_size)
        if conditions is not None and conditions.tensors:
            raise ContractError(
                f"JEPAModel takes no conditions, got keys {sorted(conditions.tensors)}."
            )
        features = torch.cat([self._window(state), act.float()], -1)
        nxt: State = self.component("dynamics_model")(state, features, noise=noise)
        return nxt

    def update(
        self,
        state: State,
        action: ActionPayload | torch.Tensor,
        obs: WorldModelInput | torch.Tensor,
    ) -> State:
        """The step's prediction with the new observation's embedding in place of the predicted
        one (the window keeps the observed past)."""
        nxt = self.transition(state, action)
        nxt.tensors["z"] = self._encode(self.check_obs(obs).obs)
        return nxt

    def decode(self, state: State) -> ModelOutput:
        out: ModelOutput = self.component("decoder")(self.check_state(state))
        return out

    # -- training ---------------------------------------------------------------------------------
    def loss(self, batch: Batch) -> LossOutput:
        self.check_batch(batch)
        c = self.config
        steps, rows = batch.rewards.shape[1], batch.rewards.shape[0]
        obs = batch.obs.transpose(0, 1)  # [T+1, B, *O]
        actions = batch.actions.transpose(0, 1).float()  # [T, B, A]
        rewards = batch.rewards.transpose(0, 1).float()  # [T, B]
        term = batch.terminations.transpose(0, 1).float()  # [T, B]
        mask = batch.valid.transpose(0, 1).float()  # [T, B]
        count = mask.sum().clamp(min=1.0)
        flat = obs.flatten(0, 1)
        online = self._encode(flat).view(steps + 1, rows, -1)  # [T+1, B, D]
        with torch.no_grad():
            target = self.target_encoder(flat).view(steps + 1, rows, -1)
        predictor = self.component("dynamics_model")

        def windows(seq: list[torch.Tensor], t: int) -> torch.Tensor:
            """The last L of ``seq[: t + 1]`` (the first repeated before the start), flattened."""
            picks = [seq[max(t - k, 0)] for k in reversed(range(c.history))]
            return torch.cat(picks, -1)

        def masked(x: torch.Tensor) -> torch.Tensor:
            return (x * mask).sum() / count

        seen = list(online)
        # teacher forcing: every window is known, so all T steps go through the predictor at once
        teacher_features = torch.cat(
            [torch.stack([windows(seen, t) for t in range(steps)]), actions], -1
        )  # [T, B, L * D + A]
        teacher = predictor.next(teacher_features.flatten(0, 1)).view(steps, rows, -1)
        prediction = masked(((teacher - target[1:]) ** 2).mean(-1))
        if c.rollout_coef > 0:
            span = steps if c.rollout_steps == 0 else min(c.rollout_steps, steps)
            rolled = [online[0]]
            for t in range(span):
                rolled.append(predictor.next(torch.cat([windows(rolled, t), actions[t]], -1)))
            error = ((torch.stack(rolled[1:]) - target[1 : span + 1]) ** 2).mean(-1)
            rollout = (error * mask[:span]).sum() / mask[:span].sum().clamp(min=1.0)
        else:
            rollout = torch.zeros((), device=online.device)

        frame_mask = torch.cat([mask[:1], mask]).bool()  # [T+1, B]: o_0 is real where step 0 is
        embeddings = online[frame_mask]  # [N, D]
        std = torch.sqrt(embeddings.var(0) + 1e-4)
        variance = F.relu(1.0 - std).mean()
        centred = embeddings - embeddings.mean(0)
        cov = centred.T @ centred / max(embeddings.shape[0] - 1, 1)
        covariance = (cov.pow(2).sum() - cov.diagonal().pow(2).sum()) / c.embed_dim

        smooth = masked(((online[1:] - online[:-1]) ** 2).mean(-1))

        za = torch.cat([online[:-1].detach(), actions], -1)
        reward = masked((predictor.reward(za).squeeze(-1) - rewards) ** 2)
        if predictor.heads is not None:
            guesses = predictor.heads(teacher_features.detach().flatten(0, 1)).view(
                -1, steps, rows, c.embed_dim
            )
            heads = masked(((guesses - target[1:].unsqueeze(0)) ** 2).mean((0, -1)))
        else:
            heads = torch.zeros((), device=online.device)
        term_logit = predictor.termination(target[1:]).squeeze(-1)
        termination = masked(F.binary_cross_entropy_with_logits(term_logit, term, reduction="none"))

        total = (
            prediction
            + c.rollout_coef * rollout
            + c.var_coef * variance
            + c.cov_coef * covariance
            + c.smooth_coef * smooth
            + c.reward_coef * reward
            + c.termination_coef * termination
            + heads
        )
        components = {
            "prediction": prediction.detach(),
            "rollout": rollout.detach(),
            "variance": variance.detach(),
            "covariance": covariance.detach(),
            "smoothness": smooth.detach(),
            "reward": reward.detach(),
            "termination": termination.detach(),
            "uncertainty_heads": heads.detach(),
            # diagnostics, not loss terms: logged with them (train/ and val/) to show collapse
            "embed_std": std.detach().mean(),
            "embed_rank": effective_rank(embeddings.detach()),
        }
        return LossOutput(total, components)

    # -- hooks ------------------------------------------------------------------------------------
    def after_update(self) -> None:
        """EMA of the encoder into the target encoder (rate ``tau``): parameters and
        floating-point buffers (e.g. normalisation statistics of an override encoder); other
        buffers are copied."""
        encoder = self.component("observation_encoder")
        with torch.no_grad():
            online: list[torch.Tensor] = list(encoder.parameters())
            target: list[torch.Tensor] = list(self.target_encoder.parameters())
            torch._foreach_lerp_(target, online, self.config.tau)
            for mine, theirs in zip(self.target_encoder.buffers(), encoder.buffers(), strict=True):
                if mine.is_floating_point():
                    mine.lerp_(theirs, self.config.tau)
                else:
                    mine.copy_(theirs)

    def set_data_statistics(self, stats: Mapping[str, Any]) -> None:
        """Standardise observations with the training data's statistics (the encoder and its
        target alike): vectors with ``obs_mean`` / ``obs_std`` ``[O]``, images with
        ``image_mean [C, H, W]`` / ``image_std [C]``. The first call wins: a model whose
        statistics are set (also one loaded from disk) keeps them."""
        if bool(self.statistics_set):
            return
        for encoder in (self.component("observation_encoder"), self.target_encoder):
            setter = getattr(encoder, "set_statistics", None)
            if setter is not None:
                setter(stats)
        self.statistics_set.fill_(True)
