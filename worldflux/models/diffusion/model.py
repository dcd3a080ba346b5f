"""The ``diffusion`` family (alias ``diamond``): a DIAMOND-like world model (Alonso et al., 2024)
over image observations.

The next frame is sampled by a few Euler steps of an EDM denoiser (:mod:`.denoiser`), a U-Net
(:mod:`.unet`) conditioned on the last ``L`` frames and the last ``L`` actions; a small model of
its own (:mod:`.reward`) predicts the reward from the frames, the change the step made and the
actions, and the termination from the last ``end_window`` steps.

Unlike DIAMOND, the denoiser models the *change* from the last frame, ``x_{t+1} - x_t``, not
the frame itself: most pixels of a game frame do not move in a step, and a denoiser of changes
keeps them exactly where a denoiser of frames must learn to redraw them. On 16 x 16 moving-dot
windows (1,500 updates) this took one-step PSNR from 27.7 to 37.7 dB and five-step from 27.4 to
31.8 dB; on Breakout a frame denoiser trained 5,000 updates stayed 16 dB below copying the last
frame at one step.

Shapes: B = batch, T = steps, ``O = (C, H, W)`` uint8 images, A = action size (one-hot for
Discrete actions; any vector works), L = ``history``.

State (per row, float32): ``frames [L, C, H, W]`` (the last L frames in ``[-1, 1]``, oldest
first), ``actions [L, A]`` (the actions that led to them; zeros before the first), ``reward []``,
``continue []`` and ``uncertainty []`` (of the step that led here; 0, 1 and 0 after
``encode``), ``end_features [K, M]`` (the termination model's features of the last K =
``end_window`` steps, M = ``reward_hidden``; zeros after ``encode``).

* ``encode``: the frame, repeated L times, with zero actions and zero step features (training
  windows start the same way: frames before a window's first are its first, actions and step
  features before it are zeros).
* ``transition``: sample the change from explicit standard-normal noise ``frame [C, H, W]``
  (``deterministic``: from zero noise, one fixed frame), add it to the last frame, round to the
  uint8 pixel grid the observations live on (so changes below half a level, most of them on
  pixels that do not move, vanish instead of adding up over a rollout), then read the reward
  and the termination (the new step's features join the last K).
* ``update``: the observed frame instead of a sample.
* ``decode``: the newest frame in pixels ``[0, 255]``, the reward, the continue probability and
  the uncertainty.
* Uncertainty: the RMS distance (intensities in ``[0, 1]``) between the sampled frame and the
  denoiser's first estimate from the noisiest level, which is close to the mean of the frames
  it deems possible. Predictive, not purely epistemic: high where the model spreads its
  guesses, for lack of data or because the game is random there. ``update`` reports the same
  quantity for the sample it would have drawn deterministically.
* ``loss``: trained jointly, one loss: the EDM denoising loss of every real step's change,
  plus the reward MSE and the termination BCE on the real frames, each step's termination read
  from the features of up to K steps of its window (windows of ``seq_len`` > K let it learn
  from full ones; terminations are rare, and the Trainer's ``end_fraction`` draws windows that
  hold one, and hands the model the data's and the batches' end rates for
  :meth:`~DiffusionModel.correct_end_rate`). With
  ``context_noise`` the denoiser sees noisy past frames and learns the change from the noisy
  last frame to the clean next one.
"""

from __future__ import annotations

import math
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
from .denoiser import Denoiser, SamplerSettings
from .reward import StepCNN, WindowEnd
from .unet import ConditionalUNet


@dataclass
class DiffusionConfig(WorldModelConfig):
    """Settings of the diffusion family (module docstring).

    Attributes:
        history: frames and actions the denoiser and reward model condition on (L).
        channels: U-Net width per resolution level.
        patch: the U-Net runs on ``patch x patch`` pixel patches (H and W must divide by
            ``patch * 2 ** (levels - 1)``).
        cond_dim: width of the noise-level and action conditioning.
        sigma_data: EDM's data scale (frames are in ``[-1, 1]``).
        sampler_steps: Euler steps per imagined frame.
        sigma_min, sigma_max: the sampler's noise range (also the training range).
        reward_depth, reward_hidden: first conv width and MLP width of the reward network, and
            of the termination model (M, also the width of its per-step features).
        end_window: steps whose features the termination model reads (K): long enough to see
            what ends an episode (Breakout's game ends six to nine steps after the last ball
            leaves the screen).
        context_noise: training only: the denoiser's past frames are corrupted by Gaussian
            noise whose standard deviation (in ``[-1, 1]`` units) is drawn per example uniformly
            from ``[0, context_noise]``, and it learns the change that lands on the clean next
            frame from them, so that its own errors in long rollouts do not compound (as GameNGen
            does, Valevski et al., 2024). 0 turns it off.
        denoiser_rows: training only: the denoiser learns from at most this many windows of
            each batch (a random subset of the real steps; 0: all of them), while the reward
            and termination models learn from every window. Episode ends are rare: batches
            large enough to hold many of them (with ``end_fraction``) would make every
            denoiser update as large; this bounds its cost, as DIAMOND gives its reward and
            termination model batches of their own.
        end_lr_scale: the termination model's learning rate as a multiple of the trainer's
            (default 3: 9e-4 at the default 3e-4). Trained alone on real Breakout windows
            (16 x 24, 6 of them holding a game end; AdamW, constant rate), it found the
            held-out game ends after 800 updates with AUC 0.73 at 3e-4, 0.998 at 1e-3 (recall
            0.82 at 0.5, 0.006 % false positives) and 0.83 at 3e-3.
    """

    history: int = 4
    channels: tuple[int, ...] = (32, 64, 64)
    patch: int = 2
    cond_dim: int = 128
    sigma_data: float = 0.5
    sampler_steps: int = 3
    sigma_min: float = 2e-3
    sigma_max: float = 5.0
    reward_depth: int = 16
    reward_hidden: int = 128
    end_window: int = 12
    context_noise: float = 0.2
    denoiser_rows: int = 0
    end_lr_scale: float = 3.0

    presets: ClassVar[dict[str, dict[str, Any]]] = {
        # sizes for 64x64x3 frames and 4 actions (tests/test_diffusion_family.py checks them)
        "tiny": dict(history=2, channels=(8, 16), cond_dim=32, reward_depth=4, reward_hidden=32),
        "small": dict(history=4, channels=(32, 64, 64), cond_dim=128),
    }
    default_preset: ClassVar[str | None] = "small"

    def validate(self) -> None:
        super().validate()
        name = type(self).__name__
        if self.obs_shape:
            divisor = self.patch * 2 ** (len(self.channels) - 1)
            if (
                len(self.obs_shape) != 3
                or self.obs_shape[1] % divisor
                or self.obs_shape[2] % divisor
            ):
                raise ConfigError(
                    f"{name}.obs_shape: expected (C, H, W) images with H and W divisible by "
                    f"{divisor} (patch * 2 ** (len(channels) - 1)), got {self.obs_shape}."
                )
        for field in (
            "history",
            "patch",
            "cond_dim",
            "sampler_steps",
            "reward_depth",
            "reward_hidden",
            "end_window",
        ):
            if getattr(self, field) < 1:
                raise ConfigError(f"{name}.{field}: expected >= 1, got {getattr(self, field)}.")
        if not self.channels or min(self.channels) < 1:
            raise ConfigError(
                f"{name}.channels: expected one or more widths >= 1, got {self.channels}."
            )
        if self.denoiser_rows < 0:
            raise ConfigError(
                f"{name}.denoiser_rows: expected >= 0 (0: every window), got {self.denoiser_rows}."
            )
        if not (math.isfinite(self.end_lr_scale) and self.end_lr_scale > 0):
            raise ConfigError(
                f"{name}.end_lr_scale: expected a finite number > 0, got {self.end_lr_scale}."
            )
        if self.cond_dim % 4:
            raise ConfigError(f"{name}.cond_dim: expected a multiple of 4, got {self.cond_dim}.")
        if not 0 <= self.context_noise <= 1:
            raise ConfigError(
                f"{name}.context_noise: expected a standard deviation in [0, 1], got "
                f"{self.context_noise}."
            )
        if not 0 < self.sigma_min < self.sigma_max or self.sigma_data <= 0:
            raise ConfigError(
                f"{name}: expected 0 < sigma_min < sigma_max and sigma_data > 0, got "
                f"sigma_min={self.sigma_min}, sigma_max={self.sigma_max}, "
                f"sigma_data={self.sigma_data}."
            )

    def sampler(self) -> SamplerSettings:
        return SamplerSettings(self.sampler_steps, self.sigma_min, self.sigma_max)


def to_unit(frames: torch.Tensor) -> torch.Tensor:
    """uint8 pixels (or floats in ``[0, 255]``) ``[..., C, H, W]`` -> floats in ``[-1, 1]``."""
    return frames.float() / 127.5 - 1.0


def from_unit(frames: torch.Tensor) -> torch.Tensor:
    """Floats in ``[-1, 1]`` (clamped to it) ``[..., C, H, W]`` -> floats in ``[0, 255]``."""
    return (frames.clamp(-1.0, 1.0) + 1.0) * 127.5


@WorldModelRegistry.register("diffusion", DiffusionConfig, aliases=("diamond",))
class DiffusionModel(WorldModel):
    """DIAMOND-like diffusion world model (module docstring)."""

    config: DiffusionConfig

    def __init__(
        self,
        config: WorldModelConfig,
        component_overrides: Any = None,
        *,
        trust_imports: bool = True,
    ) -> None:
        super().__init__(config, component_overrides, trust_imports=trust_imports)
        c = self.config
        c.require_io()
        channels, size = c.obs_shape[0], c.obs_shape[1]
        net = ConditionalUNet(
            channels, c.history, c.history * c.action_dim, c.channels, c.cond_dim, c.patch
        )
        self.denoiser = Denoiser(net, c.sigma_data, c.sampler())
        inputs = (channels * (c.history + 2), size, c.history * c.action_dim)
        self.reward_net = StepCNN(*inputs, c.reward_depth, c.reward_hidden)
        self.end_net = WindowEnd(
            channels, size, c.action_dim, c.reward_depth, c.reward_hidden, c.end_window
        )
        #: added to the termination logit in imagination (not in the loss): the log odds of the
        #: data's end rate minus those of the training batches' (:meth:`correct_end_rate`)
        self.end_logit_shift: torch.Tensor
        self.register_buffer("end_logit_shift", torch.zeros(()))

    # -- layout -----------------------------------------------------------------------------------
    def state_spec(self) -> dict[str, tuple[int | str, ...]]:
        c = self.config
        return {
            "frames": (c.history, *c.obs_shape),
            "actions": (c.history, c.action_dim),
            "reward": (),
            "continue": (),
            "uncertainty": (),
            "end_features": (c.end_window, c.reward_hidden),
        }

    def noise_spec(self) -> dict[str, NoiseSpec]:
        return {"frame": NoiseSpec(tuple(self.config.obs_shape), "normal")}

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """Grey frames (0 in ``[-1, 1]``), zero actions, reward 0, continue 1, zero features."""
        c = self.config
        where = self.device if device is None else torch.device(device)
        frames = torch.zeros(batch_size, c.history, *c.obs_shape, device=where)
        return self._state(frames, frames.new_zeros(batch_size, c.history, c.action_dim))

    def no_features(self, batch_size: int, like: torch.Tensor) -> torch.Tensor:
        """The termination model's step features at an episode's start: zeros ``[B, K, M]``."""
        return like.new_zeros(batch_size, self.config.end_window, self.config.reward_hidden)

    def _state(
        self,
        frames: torch.Tensor,
        actions: torch.Tensor,
        reward: torch.Tensor | None = None,
        end_logit: torch.Tensor | None = None,
        uncertainty: torch.Tensor | None = None,
        end_features: torch.Tensor | None = None,
    ) -> State:
        zeros = frames.new_zeros(frames.shape[0])
        return State(
            {
                "frames": frames,
                "actions": actions,
                "reward": zeros if reward is None else reward,
                "continue": torch.ones_like(zeros)
                if end_logit is None
                else torch.sigmoid(-end_logit),
                "uncertainty": zeros if uncertainty is None else uncertainty,
                "end_features": self.no_features(frames.shape[0], frames)
                if end_features is None
                else end_features,
            }
        )

    # -- the contract -----------------------------------------------------------------------------
    def encode(self, obs: WorldModelInput | torch.Tensor) -> State:
        frame = to_unit(self.check_obs(obs).obs)
        c = self.config
        frames = frame[:, None].expand(-1, c.history, *frame.shape[1:]).contiguous()
        return self._state(frames, frame.new_zeros(frame.shape[0], c.history, c.action_dim))

    def _step(
        self, state: State, action: ActionPayload | torch.Tensor, start: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample from ``start [B, C, H, W]``: (history ``[B, L, C, H, W]``, actions
        ``[B, L, A]``, the clamped sample ``[B, C, H, W]``, its uncertainty ``[B]``)."""
        self.check_state(state)
        act = self.check_action(action, state.batch_size).float()
        history = state["frames"]
        actions = torch.cat([state["actions"][:, 1:], act[:, None]], dim=1)
        last = history[:, -1]
        change, first = self.denoiser.sample(start, history.flatten(1, 2), actions.flatten(1))
        sample = to_unit(from_unit(last + change).round())
        first = last + first
        spread = ((sample - first) * 0.5).pow(2).flatten(1).mean(-1).sqrt()
        return history, actions, sample, spread

    def reward(
        self, history: torch.Tensor, actions: torch.Tensor, frame: torch.Tensor
    ) -> torch.Tensor:
        """Reward ``[B]`` of the step from ``history [B, L, C, H, W]`` by ``actions [B, L, A]``
        (the last one taken now) to ``frame [B, C, H, W]``; the reward model also sees the
        change ``frame - history[:, -1]``."""
        inputs = torch.cat([history.flatten(1, 2), frame, frame - history[:, -1]], dim=1)
        return self.reward_net(inputs, actions.flatten(1))

    def correct_end_rate(self, real: float, drawn: float) -> None:
        """Training batches held ends at rate ``drawn`` where the data has ``real`` (the
        Trainer's ``end_fraction``); shift the termination logit of ``transition`` and
        ``update`` by ``logit(real) - logit(drawn)``, so that a model that learned the drawn
        rate predicts the real one (exact when drawing changes the odds of an end by one
        factor everywhere)."""
        self.end_logit_shift.fill_(end_logit_shift(real, drawn, "DiffusionModel"))

    def step_features(
        self, last: torch.Tensor, action: torch.Tensor, frame: torch.Tensor
    ) -> torch.Tensor:
        """The termination model's features ``[B, M]`` of the step from ``last [B, C, H, W]``
        by ``action [B, A]`` to ``frame [B, C, H, W]``."""
        return self.end_net.features(frame, frame - last, action)

    def _next(
        self,
        state: State,
        history: torch.Tensor,
        actions: torch.Tensor,
        frame: torch.Tensor,
        uncertainty: torch.Tensor,
    ) -> State:
        reward = self.reward(history, actions, frame)
        new = self.step_features(history[:, -1], actions[:, -1], frame)
        window = torch.cat([state["end_features"][:, 1:], new[:, None]], dim=1)
        frames = torch.cat([history[:, 1:], frame[:, None]], dim=1)
        end_logit = self.end_net(window) + self.end_logit_shift
        return self._state(frames, actions, reward, end_logit, uncertainty, window)

    def transition(
        self,
        state: State,
        action: ActionPayload | torch.Tensor,
        conditions: ConditionPayload | None = None,
        deterministic: bool = False,
        noise: Mapping[str, torch.Tensor] | None = None,
    ) -> State:
        if conditions is not None:
            raise ContractError(
                "DiffusionModel.transition: the diffusion family takes no conditions."
            )
        shape = (state.batch_size, *self.config.obs_shape)
        if deterministic:
            start = torch.zeros(shape, device=state.device)
        elif noise is not None:
            if set(noise) != {"frame"}:
                raise ContractError(
                    f"DiffusionModel.transition: expected noise keys ['frame'], got {sorted(noise)}."
                )
            start = noise["frame"]
        else:
            start = torch.randn(shape, device=state.device)
        history, actions, sample, spread = self._step(state, action, start)
        return self._next(state, history, actions, sample, spread)

    def update(
        self,
        state: State,
        action: ActionPayload | torch.Tensor,
        obs: WorldModelInput | torch.Tensor,
    ) -> State:
        frame = to_unit(self.check_obs(obs).obs)
        start = torch.zeros_like(frame)
        history, actions, _, spread = self._step(state, action, start)
        return self._next(state, history, actions, frame, spread)

    def decode(self, state: State) -> ModelOutput:
        self.check_state(state)
        pixels = from_unit(state["frames"][:, -1])
        return ModelOutput(
            {"obs": pixels, "reward": state["reward"], "continue": state["continue"]},
            uncertainty=state["uncertainty"],
        )

    # -- training -----------------------------------------------------------------------------------
    def windows(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every step of ``batch`` as a conditioning window: (history ``[B, T, L, C, H, W]``,
        actions ``[B, T, L, A]``, targets ``[B, T, C, H, W]``), frames in ``[-1, 1]``. Frames
        before a window's first are its first; actions before its first are zeros (as after
        ``encode``)."""
        L, t_len = self.config.history, batch.seq_len
        frames = to_unit(batch.obs)  # [B, T+1, C, H, W]
        steps = torch.arange(t_len, device=frames.device)[:, None]
        lags = torch.arange(L, device=frames.device)[None, :]
        history = frames[:, (steps + lags - (L - 1)).clamp(min=0)]  # [B, T, L, C, H, W]
        padded = F.pad(batch.actions.float(), (0, 0, L - 1, 0))  # [B, T+L-1, A]
        actions = padded[:, steps + lags]  # [B, T, L, A]
        return history, actions, frames[:, 1:]

    def corrupt(self, history: torch.Tensor) -> torch.Tensor:
        """``history [M, L, C, H, W]`` plus Gaussian noise of a standard deviation drawn per row
        from ``U(0, context_noise)`` (``context_noise`` in the config); unchanged when 0 and in
        eval mode (validation losses score clean past frames)."""
        if not self.config.context_noise or not self.training:
            return history
        scale = torch.rand(history.shape[0], device=history.device) * self.config.context_noise
        return history + scale[:, None, None, None, None] * torch.randn_like(history)

    def param_groups(self) -> list[dict[str, Any]]:
        """The termination model at ``end_lr_scale`` times the learning rate, the rest at 1x."""
        end = list(self.end_net.parameters())
        ids = {id(p) for p in end}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        return [
            {"name": "model", "params": rest},
            {"name": "termination", "params": end, "lr_scale": self.config.end_lr_scale},
        ]

    def end_logits(
        self, history: torch.Tensor, actions: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """Termination logits ``[B, T]`` of windows (as :meth:`windows` gives them): step t
        reads the features of steps t-K+1..t (zeros before the window's first, as after
        ``encode``)."""
        b, t_len, k = targets.shape[0], targets.shape[1], self.config.end_window
        features = self.step_features(
            history[:, :, -1].flatten(0, 1), actions[:, :, -1].flatten(0, 1), targets.flatten(0, 1)
        ).view(b, t_len, -1)  # [B, T, M]
        padded = F.pad(features, (0, 0, k - 1, 0))  # [B, T+K-1, M]
        windows = padded.unfold(1, k, 1).transpose(2, 3)  # [B, T, K, M]
        return self.end_net(windows.flatten(0, 1)).view(b, t_len)

    def loss(self, batch: Batch) -> LossOutput:
        self.check_batch(batch)
        real = batch.valid.bool()  # [B, T]
        history, actions, targets = self.windows(batch)
        end_logit = self.end_logits(history, actions, targets)[real]
        history, actions, targets = history[real], actions[real], targets[real]  # M rows
        reward = self.reward(history, actions, targets)
        rows = self.config.denoiser_rows
        if 0 < rows < len(targets):
            pick = torch.randperm(len(targets), device=targets.device)[:rows]
            history, actions, targets = history[pick], actions[pick], targets[pick]
        context = self.corrupt(history)
        change = targets - context[:, -1]
        parts = {
            "denoising": self.denoiser.loss(
                change, context.flatten(1, 2), actions.flatten(1)
            ).mean(),
            "reward": ((reward - batch.rewards[real]) ** 2).mean(),
            "termination": F.binary_cross_entropy_with_logits(
                end_logit, batch.terminations[real].float()
            ),
        }
        total = torch.stack(list(parts.values())).sum()
        return LossOutput(total, {k: v.detach() for k, v in parts.items()}, {})
