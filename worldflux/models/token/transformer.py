"""The sequence model of an IRIS-like token world model (Micheli et al., 2023): a causal
transformer over frame tokens and action tokens that predicts the next frame's tokens, the
reward and the termination.

Shapes: B = batch, T = steps, N = tokens per frame, K = codebook size, A = actions, E = width,
C = cache capacity in tokens (``context_steps * (N + 1)``).

A step is ``N + 1`` tokens: the frame's ``N`` tokens, then the action taken after it. Over a
window ``z_0, a_0, z_1, a_1, ..., z_T`` the output at ``a_t`` predicts the first token of
``z_{t+1}`` and the output at ``z_{t+1}^i`` predicts ``z_{t+1}^{i+1}``. Two heads predict the
reward ``r_t`` and whether the episode terminated, read (``outcome_at``) at ``a_t``, before the
next frame is drawn (as IRIS), or at the last token of ``z_{t+1}``, once it is drawn (so
that in imagination they agree with the frame the model drew).

Positions enter through rotary embeddings (RoPE, Su et al., 2021) applied to queries and keys, so
attention depends only on the distance between tokens. Imagination keeps a key/value cache per
row as a ring of ``C`` slots written at ``position mod C``: rows that started at different times
(envs reset independently) share one batch, and the oldest tokens fall out of the window without
recomputing anything. Training attends the same way: every token sees itself and the
``C - 1`` tokens before it (a banded causal mask), so windows longer than the context train the
model exactly as imagination runs it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...core.errors import ConfigError

#: where the reward and termination heads read (TransformerConfig.outcome_at)
OUTCOME_AT = ("action", "frame")


@dataclass
class TransformerConfig:
    """Sizes of :class:`TokenTransformer`.

    Attributes:
        codes: K, the tokeniser's codebook size.
        actions: A, discrete actions.
        tokens_per_frame: N.
        context_steps: steps the attention sees: each token attends to the last
            ``C = context_steps * (N + 1)`` tokens, itself included (the cache's size).
        embed: E, the residual width (divisible by ``heads``, head width even for RoPE).
        layers, heads: transformer blocks and attention heads.
        outcome_at: where the reward and termination heads read: ``"action"`` (the action
            token) or ``"frame"`` (the next frame's last token; module docstring).
    """

    codes: int = 512
    actions: int = 4
    tokens_per_frame: int = 16
    context_steps: int = 8
    embed: int = 128
    layers: int = 2
    heads: int = 4
    outcome_at: str = "action"

    def validate(self) -> None:
        for name in ("codes", "actions", "tokens_per_frame", "context_steps", "embed", "layers", "heads"):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"TransformerConfig.{name}: expected an int >= 1, got {value!r}.")
        if self.embed % self.heads or (self.embed // self.heads) % 2:
            raise ConfigError(
                f"TransformerConfig: embed / heads must be an even integer (RoPE rotates pairs), "
                f"got embed {self.embed} and heads {self.heads}."
            )
        if self.outcome_at not in OUTCOME_AT:
            raise ConfigError(
                f"TransformerConfig.outcome_at: expected one of {list(OUTCOME_AT)}, got "
                f"{self.outcome_at!r}."
            )

    @property
    def step_tokens(self) -> int:
        return self.tokens_per_frame + 1

    @property
    def capacity(self) -> int:
        """C, tokens in the attention window."""
        return self.context_steps * self.step_tokens


def rotate(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of ``x [..., S, H, D]`` at integer ``positions [..., S]``."""
    d = x.shape[-1]
    freqs = 10_000.0 ** (-torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)
    angle = positions.to(torch.float32)[..., None, None] * freqs  # [..., S, 1, D/2]
    cos, sin = angle.cos(), angle.sin()
    x1, x2 = x[..., 0::2].float(), x[..., 1::2].float()
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1).flatten(-2)
    return out.to(x.dtype)


class Block(nn.Module):
    """Pre-norm attention + MLP block over ``[B, S, E]``."""

    def __init__(self, embed: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(embed), nn.LayerNorm(embed)
        self.qkv = nn.Linear(embed, 3 * embed)
        self.proj = nn.Linear(embed, embed)
        self.mlp = nn.Sequential(
            nn.Linear(embed, 4 * embed), nn.GELU(), nn.Linear(4 * embed, embed)
        )

    def qkv_rotated(
        self, x: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[B, S, E]`` -> q, k, v ``[B, S, H, D]`` (q and k rotated to ``positions [B, S]``)."""
        b, s, e = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, s, 3, self.heads, e // self.heads).unbind(2)
        return rotate(q, positions), rotate(k, positions), v

    def finish(self, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """Residual updates after attention output ``[B, S, H, D]``."""
        x = x + self.proj(attended.flatten(2))
        return x + self.mlp(self.norm2(x))

    def forward(
        self, x: torch.Tensor, positions: torch.Tensor, visible: torch.Tensor
    ) -> torch.Tensor:
        """``x [B, S, E]`` at ``positions [B, S]``; ``visible [S, S]``: query i may attend to
        key j."""
        q, k, v = self.qkv_rotated(x, positions)
        att = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=visible
        )
        return self.finish(x, att.transpose(1, 2))


class TokenTransformer(nn.Module):
    """Frame and action tokens -> next-token logits, reward and termination (module docstring)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        config.validate()
        self.config = c = config
        self.frame_embed = nn.Embedding(c.codes, c.embed)
        self.action_embed = nn.Embedding(c.actions, c.embed)
        self.slot_embed = nn.Embedding(c.step_tokens, c.embed)  # place within a step
        self.blocks = nn.ModuleList(Block(c.embed, c.heads) for _ in range(c.layers))
        self.norm = nn.LayerNorm(c.embed)
        self.token_head = nn.Linear(c.embed, c.codes)
        self.reward_head = nn.Sequential(
            nn.Linear(c.embed, c.embed), nn.GELU(), nn.Linear(c.embed, 1)
        )
        self.end_head = nn.Sequential(nn.Linear(c.embed, c.embed), nn.GELU(), nn.Linear(c.embed, 1))

    def embed_steps(self, tokens: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``tokens [B, T+1, N]``, ``actions [B, T]`` -> the interleaved sequence ``[B, S, E]``,
        ``S = (T+1) * (N+1) - 1`` (the last frame has no action)."""
        c = self.config
        b, t1, n = tokens.shape
        if n != c.tokens_per_frame or actions.shape != (b, t1 - 1):
            raise ConfigError(
                f"TokenTransformer: expected tokens [B, T+1, {c.tokens_per_frame}] and actions "
                f"[B, T], got {list(tokens.shape)} and {list(actions.shape)}."
            )
        frames = self.frame_embed(tokens)  # [B, T+1, N, E]
        acts = self.action_embed(actions).unsqueeze(2)  # [B, T, 1, E]
        acts = torch.cat([acts, acts.new_zeros(b, 1, 1, c.embed)], 1)  # pad the last step
        seq = torch.cat([frames, acts], 2) + self.slot_embed.weight  # [B, T+1, N+1, E]
        return seq.flatten(1, 2)[:, :-1]

    def forward(self, tokens: torch.Tensor, actions: torch.Tensor) -> dict[str, torch.Tensor]:
        """Teacher-forced predictions over a window of any length (attention reaches back
        ``C`` tokens): ``logits [B, T, N, K]`` for the tokens of frames ``1..T``,
        ``reward [B, T]`` and ``end_logit [B, T]`` for steps ``0..T-1``."""
        c = self.config
        x = self.embed_steps(tokens, actions)
        b, s, _ = x.shape
        index = torch.arange(s, device=x.device)
        distance = index[:, None] - index[None, :]  # query minus key
        visible = (distance >= 0) & (distance < c.capacity)  # [S, S]
        positions = index.expand(b, s)
        for block in self.blocks:
            x = block(x, positions, visible)
        h = self.norm(x)
        n, t = c.tokens_per_frame, actions.shape[1]
        # predictions of frame t+1 come from a_t and z_{t+1}^1..N-1: positions
        # t(N+1)+N .. t(N+1)+2N-1, i.e. N consecutive positions from each action
        starts = torch.arange(t, device=x.device) * (n + 1) + n
        idx = starts[:, None] + torch.arange(n, device=x.device)  # [T, N]
        pred = h[:, idx]  # [B, T, N, E]
        # the action token a_t, or z_{t+1}'s last token N positions later
        outcome = h[:, starts if c.outcome_at == "action" else starts + n]  # [B, T, E]
        return {
            "logits": self.token_head(pred),
            "reward": self.reward_head(outcome).squeeze(-1),
            "end_logit": self.end_head(outcome).squeeze(-1),
        }

    # -- imagination with a key/value cache ------------------------------------------------------
    def empty_cache(
        self, batch: int, device: torch.device | str | None = None
    ) -> dict[str, torch.Tensor]:
        """A cache of ``batch`` empty rows: ``keys``/``values`` ``[B, layers, C, H, D]`` and
        ``position [B]`` (tokens seen since the row's start; slot ``s`` holds a token once
        ``position > s``)."""
        c = self.config
        shape = (batch, c.layers, c.capacity, c.heads, c.embed // c.heads)
        dev = self.token_head.weight.device if device is None else torch.device(device)
        return {
            "keys": torch.zeros(shape, device=dev),
            "values": torch.zeros(shape, device=dev),
            "position": torch.zeros(batch, dtype=torch.long, device=dev),
        }

    def feed(
        self, cache: dict[str, torch.Tensor], x: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Append one embedded token per row ``x [B, E]`` (its slot embedding included) to the
        cache; returns the final hidden state ``[B, E]`` and the new cache (the one given is
        not modified)."""
        step = StepWriter(self, cache)
        h = step.feed(x)
        return h, step.flush()

    def frame_inputs(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens [B, N]`` -> embedded inputs ``[B, N, E]`` with their slot embeddings."""
        return self.frame_embed(tokens) + self.slot_embed.weight[: self.config.tokens_per_frame]

    def action_input(self, actions: torch.Tensor) -> torch.Tensor:
        """``actions [B]`` -> ``[B, E]`` with the action slot's embedding."""
        return self.action_embed(actions) + self.slot_embed.weight[-1]

    def observe(
        self, cache: dict[str, torch.Tensor], tokens: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Feed a frame's ``tokens [B, N]`` (an observed or a reset frame): the new cache."""
        step = StepWriter(self, cache)
        for x in self.frame_inputs(tokens).unbind(1):
            step.feed(x)
        return step.flush()

    def act(
        self, cache: dict[str, torch.Tensor], actions: torch.Tensor
    ) -> tuple[torch.Tensor, StepWriter]:
        """Feed ``actions [B]`` after the frame in ``cache``: returns the hidden state at the
        action token ``[B, E]`` (what the first-token head reads, and with ``outcome_at``
        ``"action"`` the reward and termination heads) and the step in progress (the frame
        follows, then :meth:`StepWriter.flush`)."""
        step = StepWriter(self, cache)
        return step.feed(self.action_input(actions)), step

    def sample_frame(
        self,
        step: StepWriter,
        h: torch.Tensor,
        uniform: torch.Tensor,
        temperature: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample the next frame's ``N`` tokens one by one after the action token whose hidden
        state is ``h [B, E]``, from explicit noise ``uniform [B, N]`` in ``[0, 1)``
        (inverse-CDF sampling, so the same noise gives the same frame) at ``temperature`` (0:
        the most likely token), feeding them to ``step`` (e.g. from :meth:`act`). Returns
        ``tokens [B, N]``, the mean entropy of the model's own next-token distributions along
        the way ``[B]`` (nats per token, at temperature 1) and the hidden state the reward and
        termination heads read ``[B, E]`` (:meth:`outcome_state`)."""
        c = self.config
        if uniform.shape != (h.shape[0], c.tokens_per_frame):
            raise ConfigError(
                f"TokenTransformer: expected uniform noise [{h.shape[0]}, "
                f"{c.tokens_per_frame}], got {list(uniform.shape)}."
            )
        out, entropy, at_action = [], h.new_zeros(h.shape[0]), h
        for i in range(c.tokens_per_frame):
            logits = self.token_head(h)
            entropy = entropy + token_entropy(logits)
            token = sample_token(logits, uniform[:, i], temperature)
            out.append(token)
            h = step.feed(self.frame_embed(token) + self.slot_embed.weight[i])
        tokens = torch.stack(out, 1)
        return tokens, entropy / c.tokens_per_frame, self.outcome_state(at_action, h)

    def outcome_state(self, at_action: torch.Tensor, at_last_token: torch.Tensor) -> torch.Tensor:
        """The hidden state ``[B, E]`` the reward and termination heads read: the one at the
        action token or at the next frame's last token (``outcome_at``)."""
        return at_action if self.config.outcome_at == "action" else at_last_token

    def observe_frame(
        self, step: StepWriter, h: torch.Tensor, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Feed an observed frame's ``tokens [B, N]`` to ``step`` after the action token whose
        hidden state is ``h [B, E]``; returns the mean entropy of the model's predictions of
        those tokens ``[B]`` (teacher forced, as in :meth:`sample_frame`) and the hidden state
        the reward and termination heads read ``[B, E]`` (:meth:`outcome_state`)."""
        entropy, at_action = h.new_zeros(h.shape[0]), h
        for x in self.frame_inputs(tokens).unbind(1):
            entropy = entropy + token_entropy(self.token_head(h))
            h = step.feed(x)
        return entropy / self.config.tokens_per_frame, self.outcome_state(at_action, h)

    def imagine(
        self,
        cache: dict[str, torch.Tensor],
        actions: torch.Tensor,
        uniform: torch.Tensor,
        temperature: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """One imagined step after the frame in ``cache``: :meth:`act`, then
        :meth:`sample_frame`. Returns ``(tokens [B, N], reward [B], end_logit [B], cache)``;
        the sampled frame is in the new cache (the cache given is not modified)."""
        h, step = self.act(cache, actions)
        tokens, _, outcome = self.sample_frame(step, h, uniform, temperature)
        reward = self.reward_head(outcome).squeeze(-1)
        end_logit = self.end_head(outcome).squeeze(-1)
        return tokens, reward, end_logit, step.flush()


class StepWriter:
    """The tokens of one step fed after a cache, written into its ring once, by :meth:`flush`.

    Two ways to the same result (a token at position ``p`` sees positions ``p - C + 1 .. p``):

    * eager torch: the cache is copied once at the start of the step and each token is written
      into its ring slot in place, then attends over the ring (fused attention);
    * traced for export (``torch.export`` / ONNX), where every write into a tensor is a copy of
      it: the new keys and values wait beside the cache in a small buffer, each token attends to
      the cached slots still inside its window and to the step's earlier tokens (one softmax
      over both), and :meth:`flush` writes them all at once, so the graph copies the cache once
      per step instead of once per token and layer (ONNX Runtime 6-15x faster on Breakout).
    """

    def __init__(
        self,
        model: TokenTransformer,
        cache: dict[str, torch.Tensor],
        in_place: bool | None = None,
    ) -> None:
        """``in_place``: the eager way (None: eager unless traced for export or compiled)."""
        self.model = model
        self.cache = cache
        self.start = cache["position"]  # [B]
        c = model.config
        self.fed = 0
        if in_place is None:
            in_place = not (torch.compiler.is_exporting() or torch.compiler.is_compiling())
        self.in_place = in_place
        if in_place:
            self.ring = {k: cache[k].clone() for k in ("keys", "values")}
        else:
            # the position each slot holds before this step (negative: never written)
            slots = torch.arange(c.capacity, device=self.start.device)
            before = self.start[:, None] - 1
            self.held = before - torch.remainder(before - slots[None], c.capacity)  # [B, C]
            # the step's keys and values per layer, [B, H, step_tokens, D]
            shape = (self.start.shape[0], c.heads, c.step_tokens, c.embed // c.heads)
            self.keys = [cache["keys"].new_zeros(shape) for _ in range(c.layers)]
            self.values = [cache["values"].new_zeros(shape) for _ in range(c.layers)]

    def feed(self, x: torch.Tensor) -> torch.Tensor:
        """Feed one embedded token per row ``x [B, E]``; returns its final hidden state."""
        c = self.model.config
        j = self.fed
        if j >= c.step_tokens:
            raise ConfigError(
                f"StepWriter: a step holds at most {c.step_tokens} tokens; flush it first."
            )
        pos = self.start + j  # [B]
        if self.in_place:
            self.fed = j + 1
            return self._feed_in_place(x, pos)
        old_visible = (self.held >= 0) & (self.held > pos[:, None] - c.capacity)  # [B, C]
        old_bias = torch.zeros_like(old_visible, dtype=x.dtype).masked_fill(
            ~old_visible, float("-inf")
        )[:, None, None, :]  # [B, 1, 1, C]
        h = x[:, None]  # [B, 1, E]
        for i, block in enumerate(self.model.blocks):
            assert isinstance(block, Block)
            q, k, v = block.qkv_rotated(h, pos[:, None])  # [B, 1, H, D]
            self.keys[i][:, :, j] = k[:, 0]
            self.values[i][:, :, j] = v[:, 0]
            new_k, new_v = self.keys[i][:, :, : j + 1], self.values[i][:, :, : j + 1]
            q = q.transpose(1, 2)  # [B, H, 1, D]
            old_k = self.cache["keys"][:, i].transpose(1, 2)  # [B, H, C, D]
            old_v = self.cache["values"][:, i].transpose(1, 2)
            scale = q.shape[-1] ** -0.5
            old_s = torch.matmul(q, old_k.transpose(-1, -2)) * scale + old_bias  # [B, H, 1, C]
            new_s = torch.matmul(q, new_k.transpose(-1, -2)) * scale  # [B, H, 1, j + 1]
            p = torch.softmax(torch.cat([old_s, new_s], -1), -1)
            att = torch.matmul(p[..., : c.capacity], old_v) + torch.matmul(
                p[..., c.capacity :], new_v
            )  # [B, H, 1, D]
            h = block.finish(h, att.transpose(1, 2))
        self.fed = j + 1
        return self.model.norm(h[:, 0])

    def _feed_in_place(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """:meth:`feed` in eager torch: write the token into the ring copy, attend over it."""
        c = self.model.config
        slot = torch.remainder(pos, c.capacity)  # [B]
        rows = torch.arange(x.shape[0], device=x.device)
        keys, values = self.ring["keys"], self.ring["values"]
        written = torch.arange(c.capacity, device=x.device)[None] <= pos[:, None]  # [B, C]
        h = x[:, None]  # [B, 1, E]
        for i, block in enumerate(self.model.blocks):
            assert isinstance(block, Block)
            q, k, v = block.qkv_rotated(h, pos[:, None])
            keys[rows, i, slot], values[rows, i, slot] = k[:, 0], v[:, 0]
            att = F.scaled_dot_product_attention(
                q.transpose(1, 2),  # [B, H, 1, D]
                keys[:, i].transpose(1, 2),  # [B, H, C, D]
                values[:, i].transpose(1, 2),
                attn_mask=written[:, None, None, :],
            )
            h = block.finish(h, att.transpose(1, 2))
        return self.model.norm(h[:, 0])

    def flush(self) -> dict[str, torch.Tensor]:
        """The cache with this step's tokens written into their ring slots."""
        c = self.model.config
        n = self.fed
        if self.in_place:
            return {**self.ring, "position": self.start + n}
        b = self.start.shape[0]
        slots = torch.remainder(
            self.start[:, None] + torch.arange(n, device=self.start.device), c.capacity
        )  # [B, n]
        rows = torch.arange(b, device=slots.device)[:, None]  # [B, 1]
        out = {"position": self.start + n}
        for name, pending in (("keys", self.keys), ("values", self.values)):
            # [L x [B, H, n, D]] -> [B, n, L, H, D]
            new = torch.stack([layer[:, :, :n] for layer in pending], 1).permute(0, 3, 1, 2, 4)
            ring = self.cache[name].clone()
            ring[rows, :, slots] = new
            out[name] = ring
        return out


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of the distributions ``logits [B, K]`` -> ``[B]``."""
    log_p = torch.log_softmax(logits.float(), -1)
    return -(log_p.exp() * log_p).sum(-1)


def sample_token(logits: torch.Tensor, uniform: torch.Tensor, temperature: float) -> torch.Tensor:
    """Inverse-CDF sample of ``logits [B, K]`` with ``uniform [B]`` in ``[0, 1)`` -> ``[B]``;
    ``temperature`` 0 takes the argmax."""
    if temperature < 0:
        raise ConfigError(f"temperature: expected >= 0, got {temperature}.")
    if temperature == 0:
        return logits.argmax(-1)
    cdf = torch.softmax(logits.float() / temperature, -1).cumsum(-1)
    # the first index whose cumulative probability reaches u: the count of entries below it
    # (the last entry is left out, so that rounding in the sum never gives an index of K)
    return (cdf[:, :-1] < uniform.float()[:, None]).sum(-1)
