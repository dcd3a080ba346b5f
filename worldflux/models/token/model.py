"""The ``token`` family (alias ``iris``): an IRIS-like world model (Micheli et al., 2023) over
image observations and discrete actions.

A frame becomes ``N = grid x grid`` tokens of a VQ codebook (:mod:`.tokenizer`); a causal
transformer over frame and action tokens (:mod:`.transformer`) predicts the next frame's tokens
one by one, the reward and the termination.

Shapes: B = batch, T = steps, ``O = (C, H, W)`` uint8 images (H = W), A = number of actions
(one-hot), N = tokens per frame, L = layers, ``Cc = context_steps * (N + 1)`` cached tokens,
Hh x D = heads x head width.

State (per row, all float32 so that every runtime keeps it as it keeps other families' states):
``tokens [N]`` (the current frame's codes, whole numbers), ``frame [C, H, W]`` (the current
frame's pixels, what ``decode`` shows), ``keys`` / ``values``
``[L, Cc, Hh, D]`` (the attention cache, a ring), ``position []`` (tokens seen since the row
started, a whole number, exact up to 2^24), ``reward []``, ``continue []`` and ``uncertainty []``
(of the step that led here; 0, 1 and 0 after ``encode``).

* ``encode``: tokenise the frame, feed it to an empty cache.
* ``transition``: feed the action, then sample the next frame's ``N`` tokens by inverse-CDF
  sampling from explicit uniform noise ``tokens [N]`` (``deterministic``: the most likely token;
  otherwise at ``temperature``); the reward and termination heads read the action token or,
  with ``outcome_at="frame"``, the drawn frame's last token.
* ``update``: feed the action, then the observed frame's tokens (heads read as in
  ``transition``).
* Frames (``redraw_threshold``): by default an imagined frame is the previous frame redrawn
  only where it changed: in the grid cells whose token changed and their 8 neighbours, the
  pixels whose decode (the tokeniser's decoder) differs from the previous frame by more than
  ``redraw_threshold`` levels (of 255, in any channel) take the decode, every other pixel stays
  (the neighbours, because the tokeniser's receptive field is wider than a cell: an object
  that moves can change the token of the cell next to it and leave its own cell's token as
  it was; without them a moving dot left ghosts, 25.7 dB one step ahead against 37.6 with
  them); ``encode`` / ``update`` keep the observed frame itself. A static background then
  stays exact (the observed start frame's pixels) where a full decode blurs it at the
  tokeniser's error every step, and a redrawn cell changes only where something moved, not
  by the decoder's own error. On Breakout this lifts the k-step PSNR and SSIM above copying
  the last frame, which full decodes stay below
  (benchmarks/results/token-redraw-breakout.md). ``None`` decodes every frame whole, as IRIS
  does.
* ``decode``: the state's frame (pixels in ``[0, 255]``; decoded cells unclipped), the reward,
  the continue probability and the uncertainty.
* Uncertainty: the mean entropy (nats per token) of the transformer's own next-token
  distributions over the step's frame (at temperature 1; for ``update``, of its predictions of
  the observed tokens). A predictive (total) uncertainty, not a purely epistemic one: it is
  high where the model is unsure of the next frame, for lack of data or because the game is
  random there. Disagreement heads on the action token's state (as the RSSM families') were
  tried first and barely moved off the data (1.06x on unseen moving-dot frames, where the
  entropy rose 2-3x).
* ``loss``: trained jointly, as IRIS trains its parts side by side: the tokeniser's
  reconstruction + commitment loss on every real frame of the batch, plus the transformer's
  next-token cross-entropy, reward MSE and termination BCE on the tokens the current tokeniser
  gives (computed without gradients, so the transformer never moves the tokeniser).
  Terminations are rare: the Trainer's ``end_fraction`` draws windows that hold one and hands
  the model the data's and the batches' end rates for :meth:`~TokenModel.correct_end_rate`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ...core.config import WorldModelConfig
from ...core.errors import ConfigError, ContractError
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
from ..end_rate import end_logit_shift
from .tokenizer import FrameTokenizer, TokenizerConfig
from .transformer import TokenTransformer, TransformerConfig


@dataclass
class TokenConfig(WorldModelConfig):
    """Settings of the token family (module docstring).

    Attributes:
        grid: tokens per frame side (N = grid²); ``H / grid`` must be a power of two >= 2.
        codes: codebook size K.
        code_dim: width of a code.
        depth: channels of the tokeniser's first conv stage.
        commitment, ema_decay, dead_code_threshold: the VQ codebook's learning (see
            :class:`~worldflux.models.token.tokenizer.TokenizerConfig`).
        changed_pixel_weight: in the tokeniser's reconstruction loss, the weight of pixels
            that differ from the previous or the next frame of the training window (1: plain
            MSE).
        context_steps: steps the transformer attends to (training and imagination alike).
        embed, layers, heads: the transformer's width, blocks and attention heads.
        temperature: sampling temperature of imagined tokens (``deterministic`` uses 0).
        outcome_at: where the reward and termination heads read: ``"action"`` (the action
            token, before the next frame is drawn, as IRIS) or ``"frame"`` (the next frame's
            last token, so that they agree with the frame drawn).
        redraw_threshold: an imagined frame redraws the pixels of cells whose token changed
            (and of their neighbours) where the decode differs from the previous frame by more
            than this many levels (of 255; 0: those cells whole); ``None``: every frame is
            decoded whole (module docstring).
    """

    grid: int = 4
    codes: int = 512
    code_dim: int = 64
    depth: int = 32
    commitment: float = 0.25
    ema_decay: float = 0.99
    dead_code_threshold: float = 0.1
    changed_pixel_weight: float = 1.0
    context_steps: int = 8
    embed: int = 128
    layers: int = 3
    heads: int = 4
    temperature: float = 1.0
    outcome_at: str = "action"
    redraw_threshold: float | None = 24.0

    presets: ClassVar[dict[str, dict[str, Any]]] = {
        # sizes for 64x64x3 frames and 4 actions (tests/test_token_family.py checks them)
        "tiny": dict(
            grid=4, codes=32, code_dim=16, depth=8, context_steps=4, embed=32, layers=1, heads=2
        ),  # 181k
        "small": dict(grid=4, codes=512, embed=128, layers=3, heads=4, context_steps=8),  # 3.4M
    }
    default_preset: ClassVar[str | None] = "small"

    def validate(self) -> None:
        super().validate()
        if self.obs_shape and (len(self.obs_shape) != 3 or self.obs_shape[1] != self.obs_shape[2]):
            raise ConfigError(
                f"{type(self).__name__}.obs_shape: expected square (C, H, H) images, got "
                f"{self.obs_shape}."
            )
        if self.redraw_threshold is not None and not 0 <= self.redraw_threshold < 255:
            raise ConfigError(
                f"{type(self).__name__}.redraw_threshold: expected None or a level in [0, 255), "
                f"got {self.redraw_threshold}."
            )
        if self.temperature < 0:
            raise ConfigError(
                f"{type(self).__name__}.temperature: expected >= 0, got {self.temperature}."
            )
        self.transformer_config().validate()
        if self.obs_shape:
            self.tokenizer_config().validate()

    def tokenizer_config(self) -> TokenizerConfig:
        channels, size = (self.obs_shape[0], self.obs_shape[1]) if self.obs_shape else (3, 64)
        return TokenizerConfig(
            channels=channels,
            size=size,
            grid=self.grid,
            codes=self.codes,
            code_dim=self.code_dim,
            depth=self.depth,
            commitment=self.commitment,
            ema_decay=self.ema_decay,
            dead_code_threshold=self.dead_code_threshold,
            changed_pixel_weight=self.changed_pixel_weight,
        )

    def transformer_config(self) -> TransformerConfig:
        return TransformerConfig(
            codes=self.codes,
            actions=max(self.action_dim, 1),
            tokens_per_frame=self.grid * self.grid,
            context_steps=self.context_steps,
            embed=self.embed,
            layers=self.layers,
            heads=self.heads,
            outcome_at=self.outcome_at,
        )


def action_index(
    actions: torch.Tensor, owner: str, real: torch.Tensor | None = None
) -> torch.Tensor:
    """One-hot actions ``[..., A]`` -> indices ``[...]`` (long); anything else is refused (the
    family models Discrete action spaces only). ``real [...]`` (bool): only those rows are
    checked (padding may hold anything; its index is then meaningless)."""
    if torch.compiler.is_exporting() or torch.compiler.is_compiling():
        return actions.argmax(-1)  # a traced graph has no data-dependent checks
    ones = actions == 1
    one_hot = (ones | (actions == 0)).all(-1) & (ones.sum(-1) == 1)
    if real is not None:
        one_hot = one_hot | ~real
    if not bool(one_hot.all()):
        bad = actions[~one_hot][0].tolist()
        raise ContractError(
            f"{owner}: the token family models Discrete actions, expected one-hot action vectors, "
            f"got e.g. {bad}."
        )
    return actions.argmax(-1)


def changed_pixels(frames: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """``[B, T+1, H, W]`` bool: pixels of ``frames [B, T+1, C, H, W]`` that differ (in any
    channel) from the previous or the next frame, among the ``real [B, T+1]`` ones."""
    differs = (frames[:, 1:] != frames[:, :-1]).any(2) & (real[:, 1:] & real[:, :-1])[
        ..., None, None
    ]
    pad = differs.new_zeros(differs[:, :1].shape)
    return torch.cat([pad, differs], 1) | torch.cat([differs, pad], 1)


@WorldModelRegistry.register("token", TokenConfig, aliases=("iris",))
class TokenModel(WorldModel):
    """IRIS-like token world model (module docstring)."""

    config: TokenConfig

    def __init__(
        self,
        config: WorldModelConfig,
        component_overrides: Any = None,
        *,
        trust_imports: bool = True,
    ) -> None:
        super().__init__(config, component_overrides, trust_imports=trust_imports)
        self.tokenizer = FrameTokenizer(self.config.tokenizer_config())
        self.transformer = TokenTransformer(self.config.transformer_config())
        #: added to the termination logit in imagination and filtering (not in the loss): the
        #: log odds of the data's end rate minus those of the training batches'
        #: (:meth:`correct_end_rate`)
        self.end_logit_shift: torch.Tensor
        self.register_buffer("end_logit_shift", torch.zeros(()))

    # -- layout -----------------------------------------------------------------------------------
    def state_spec(self) -> dict[str, tuple[int | str, ...]]:
        t = self.transformer.config
        cache = (t.layers, t.capacity, t.heads, t.embed // t.heads)
        return {
            "tokens": (t.tokens_per_frame,),
            "frame": tuple(self.config.obs_shape),
            "keys": cache,
            "values": cache,
            "position": (),
            "reward": (),
            "continue": (),
            "uncertainty": (),
        }

    def noise_spec(self) -> dict[str, NoiseSpec]:
        return {"tokens": NoiseSpec((self.transformer.config.tokens_per_frame,), "uniform")}

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """An empty cache (nothing seen), token 0 everywhere, reward 0, continue 1."""
        where = self.device if device is None else torch.device(device)
        tokens = torch.zeros(
            batch_size, self.transformer.config.tokens_per_frame, device=where, dtype=torch.long
        )
        cache = self.transformer.empty_cache(batch_size, where)
        return self._state(tokens, self._decoded(tokens), cache)

    def _decoded(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens [B, N]`` (long) -> the tokeniser's frames ``[B, C, H, W]`` in pixels
        (``[0, 255]``, unclipped)."""
        return (self.tokenizer.decode(tokens) + 0.5) * 255.0

    def _observed(self, frames: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The frame a state keeps for observed ``frames [B, C, H, W]`` (uint8 or float pixels)
        with ``tokens [B, N]``: the frames themselves, or their decode when every frame is
        decoded whole (``redraw_threshold`` None)."""
        if self.config.redraw_threshold is None:
            return self._decoded(tokens)
        return frames.float()

    def _imagined(self, state: State, tokens: torch.Tensor) -> torch.Tensor:
        """The frame ``[B, C, H, W]`` after ``state`` for imagined ``tokens [B, N]``: the
        decode where it changed, near cells whose token changed (module docstring)."""
        decoded = self._decoded(tokens)
        threshold = self.config.redraw_threshold
        if threshold is None:
            return decoded
        g = self.config.grid
        cell = decoded.shape[-1] // g
        changed = (tokens != state["tokens"].round().long()).reshape(-1, 1, g, g).float()
        changed = F.max_pool2d(changed, 3, stride=1, padding=1) > 0  # and the 8 neighbours
        changed = changed.repeat_interleave(cell, 2).repeat_interleave(cell, 3)
        moved = (decoded - state["frame"]).abs().amax(1, keepdim=True) > threshold
        return torch.where(changed & moved, decoded, state["frame"])

    def _state(
        self,
        tokens: torch.Tensor,
        frame: torch.Tensor,
        cache: Mapping[str, torch.Tensor],
        h: torch.Tensor | None = None,
        entropy: torch.Tensor | None = None,
    ) -> State:
        """The state after a frame ``tokens [B, N]`` (shown as ``frame [B, C, H, W]``) fed
        into ``cache``; ``h [B, E]``: the hidden state the reward and termination heads read
        for the step that led to it (``outcome_at``) and ``entropy [B]`` the frame's mean token
        entropy (None after ``encode``: reward 0, continue 1, uncertainty 0)."""
        zeros = cache["keys"].new_zeros(tokens.shape[0])
        tensors = {
            "tokens": tokens.float(),
            "frame": frame.float(),
            "keys": cache["keys"],
            "values": cache["values"],
            "position": cache["position"].float(),
            "reward": zeros,
            "continue": torch.ones_like(zeros),
            "uncertainty": zeros if entropy is None else entropy.float(),
        }
        if h is not None:
            tensors["reward"] = self.transformer.reward_head(h).squeeze(-1).float()
            end_logit = self.transformer.end_head(h).squeeze(-1) + self.end_logit_shift
            tensors["continue"] = torch.sigmoid(-end_logit).float()
        return State(tensors)

    @staticmethod
    def _cache(state: State) -> dict[str, torch.Tensor]:
        """The transformer's cache of a state (``position`` back to long)."""
        return {
            "keys": state["keys"],
            "values": state["values"],
            "position": state["position"].round().long(),
        }

    def correct_end_rate(self, real: float, drawn: float) -> None:
        """Training batches held ends at rate ``drawn`` where the data has ``real`` (the
        Trainer's ``end_fraction``): shift the termination logit of ``transition`` and
        ``update`` by ``logit(real) - logit(drawn)`` (:mod:`worldflux.models.end_rate`)."""
        self.end_logit_shift.fill_(end_logit_shift(real, drawn, "TokenModel"))

    # -- the contract -----------------------------------------------------------------------------
    def encode(self, obs: WorldModelInput | torch.Tensor) -> State:
        frames = self.check_obs(obs).obs
        tokens = self.tokenizer.encode(frames)
        cache = self.transformer.observe(self.transformer.empty_cache(frames.shape[0]), tokens)
        return self._state(tokens, self._observed(frames, tokens), cache)

    def transition(
        self,
        state: State,
        action: ActionPayload | torch.Tensor,
        conditions: ConditionPayload | None = None,
        deterministic: bool = False,
        noise: Mapping[str, torch.Tensor] | None = None,
    ) -> State:
        self.check_state(state)
        if conditions is not None:
            raise ContractError("TokenModel.transition: the token family takes no conditions.")
        b = state.batch_size
        actions = action_index(self.check_action(action, b), "TokenModel.transition")
        n = self.transformer.config.tokens_per_frame
        if noise is not None:
            if set(noise) != {"tokens"}:
                raise ContractError(
                    f"TokenModel.transition: expected noise keys ['tokens'], got {sorted(noise)}."
                )
            uniform = noise["tokens"]
        else:
            uniform = torch.rand(b, n, device=state.device)
        temperature = 0.0 if deterministic else self.config.temperature
        h, step = self.transformer.act(self._cache(state), actions)
        tokens, entropy, outcome = self.transformer.sample_frame(step, h, uniform, temperature)
        return self._state(tokens, self._imagined(state, tokens), step.flush(), outcome, entropy)

    def update(
        self,
        state: State,
        action: ActionPayload | torch.Tensor,
        obs: WorldModelInput | torch.Tensor,
    ) -> State:
        self.check_state(state)
        actions = action_index(self.check_action(action, state.batch_size), "TokenModel.update")
        frames = self.check_obs(obs).obs
        h, step = self.transformer.act(self._cache(state), actions)
        tokens = self.tokenizer.encode(frames)
        entropy, outcome = self.transformer.observe_frame(step, h, tokens)
        return self._state(tokens, self._observed(frames, tokens), step.flush(), outcome, entropy)

    def decode(self, state: State) -> ModelOutput:
        self.check_state(state)
        return ModelOutput(
            {"obs": state["frame"], "reward": state["reward"], "continue": state["continue"]},
            uncertainty=state["uncertainty"],
        )

    # -- training -----------------------------------------------------------------------------------
    def loss(self, batch: Batch) -> LossOutput:
        self.check_batch(batch)
        b, t_len = batch.batch_size, batch.seq_len
        valid = batch.valid  # [B, T]
        frame_valid = torch.cat([torch.ones_like(valid[:, :1]), valid], 1).bool()  # [B, T+1]
        frames = batch.obs  # [B, T+1, C, H, W]
        changed = changed_pixels(frames, frame_valid)  # [B, T+1, H, W]
        tokenizer_loss, tokenizer_parts = self.tokenizer.loss(
            frames[frame_valid], changed[frame_valid]
        )
        tokens = frames.new_zeros(b, t_len + 1, self.transformer.config.tokens_per_frame).long()
        tokens[frame_valid] = tokenizer_parts["tokens"]  # padding frames: token 0, never scored
        actions = action_index(batch.actions, "TokenModel.loss", valid.bool())
        out = self.transformer(tokens, actions)

        def mean(x: torch.Tensor) -> torch.Tensor:  # over real steps
            return (x * valid).sum() / valid.sum().clamp(min=1.0)

        token_ce = F.cross_entropy(
            out["logits"].flatten(0, 2), tokens[:, 1:].flatten(), reduction="none"
        ).reshape(b, t_len, -1)
        parts = {
            "tokenizer": tokenizer_loss,
            "tokens": mean(token_ce.mean(-1)),
            "reward": mean((out["reward"] - batch.rewards) ** 2),
            "termination": mean(
                F.binary_cross_entropy_with_logits(
                    out["end_logit"], batch.terminations.float(), reduction="none"
                )
            ),
        }
        total = torch.stack(list(parts.values())).sum()
        accuracy = (out["logits"].argmax(-1) == tokens[:, 1:]).float().mean(-1)
        metrics = {
            "recon": float(tokenizer_parts["recon"]),
            "perplexity": float(tokenizer_parts["perplexity"]),
            "token_accuracy": float(mean(accuracy)),
        }
        return LossOutput(total, {k: v.detach() for k, v in parts.items()}, metrics)
