"""A small but real world-model family used by the tests (not shipped with the library).

State ``{"z": [B, latent_dim]}``; the dynamics predict a Gaussian over the next latent
(explicit noise ``{"z": [B, latent_dim]}``); the decoder predicts obs, reward and a continue
probability. It learns simple synthetic systems in a few hundred steps on a CPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

import worldflux as wf
from worldflux.core import ComponentRegistry, GaussianLatent, NoiseSpec
from worldflux.core.payloads import ConditionPayload


@dataclass
class ToyConfig(wf.WorldModelConfig):
    latent_dim: int = 16
    hidden: int = 64
    min_std: float = 0.01
    #: sample latents in loss() (False: use the mean, making the loss deterministic)
    sample_in_loss: bool = True

    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"latent_dim": 8, "hidden": 32},
        "small": {"latent_dim": 16, "hidden": 64},
    }
    default_preset: ClassVar[str | None] = "small"


def _mlp(inp: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inp, hidden), nn.ELU(), nn.Linear(hidden, out))


class ToyEncoder(nn.Module):
    def __init__(self, config: ToyConfig) -> None:
        super().__init__()
        self.net = _mlp(config.obs_shape[0], config.hidden, config.latent_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs.float())


class ToyConditioner(nn.Module):
    def __init__(self, config: ToyConfig) -> None:
        super().__init__()
        self.net = nn.Linear(config.action_dim, config.hidden)

    def forward(
        self, action: torch.Tensor, conditions: ConditionPayload | None = None
    ) -> torch.Tensor:
        return self.net(action)


class ToyDynamics(nn.Module):
    def __init__(self, config: ToyConfig) -> None:
        super().__init__()
        self.latent = GaussianLatent(config.latent_dim, min_std=config.min_std)
        self.inp = nn.Linear(config.latent_dim, config.hidden)
        self.out = nn.Sequential(nn.ELU(), nn.Linear(config.hidden, self.latent.param_dim))

    def forward(
        self,
        state: wf.State,
        features: torch.Tensor,
        *,
        deterministic: bool = False,
        noise: Mapping[str, torch.Tensor] | None = None,
    ) -> wf.State:
        z = state["z"]
        params = self.out(self.inp(z) + features)
        mean, raw = params.chunk(2, dim=-1)
        params = torch.cat([z + mean, raw], dim=-1)  # residual mean
        sample = self.latent.sample(
            params, deterministic=deterministic, noise=None if noise is None else noise["z"]
        )
        return wf.State({"z": sample})


class ToyDecoder(nn.Module):
    def __init__(self, config: ToyConfig) -> None:
        super().__init__()
        self.obs = _mlp(config.latent_dim, config.hidden, config.obs_shape[0])
        self.reward = _mlp(config.latent_dim, config.hidden, 1)
        self.cont = _mlp(config.latent_dim, config.hidden, 1)

    def logits(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "obs": self.obs(z),
            "reward": self.reward(z).squeeze(-1),
            "continue_logit": self.cont(z).squeeze(-1),
        }

    def forward(self, state: wf.State) -> wf.ModelOutput:
        out = self.logits(state["z"])
        return wf.ModelOutput(
            {
                "obs": out["obs"],
                "reward": out["reward"],
                "continue": torch.sigmoid(out["continue_logit"]),
            }
        )


@wf.WorldModelRegistry.register("toy", ToyConfig, aliases=("toy-latent",))
class ToyModel(wf.WorldModel):
    component_defaults: ClassVar[Mapping[str, Any]] = {
        "observation_encoder": ToyEncoder,
        "action_conditioner": ToyConditioner,
        "dynamics_model": ToyDynamics,
        "decoder": ToyDecoder,
    }
    config: ToyConfig

    def state_spec(self) -> dict[str, tuple[int | str, ...]]:
        return {"z": (self.config.latent_dim,)}

    def noise_spec(self) -> dict[str, NoiseSpec]:
        return {"z": NoiseSpec((self.config.latent_dim,), "normal")}

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> wf.State:
        return wf.State({"z": torch.zeros(batch_size, self.config.latent_dim, device=device)})

    def encode(self, obs: wf.WorldModelInput | torch.Tensor) -> wf.State:
        inp = self.check_obs(obs)
        return wf.State({"z": self.observation_encoder(inp.obs)})

    def update(self, state, action, obs):  # type: ignore[no-untyped-def]
        self.check_state(state)
        self.check_action(action, state.batch_size)
        return self.encode(obs)

    def transition(
        self,
        state: wf.State,
        action: wf.ActionPayload | torch.Tensor,
        conditions: ConditionPayload | None = None,
        deterministic: bool = False,
        noise: Mapping[str, torch.Tensor] | None = None,
    ) -> wf.State:
        self.check_state(state)
        features = self.action_conditioner(self.check_action(action, state.batch_size), conditions)
        return self.dynamics_model(state, features, deterministic=deterministic, noise=noise)

    def decode(self, state: wf.State) -> wf.ModelOutput:
        return self.decoder(self.check_state(state))

    def loss(self, batch: wf.Batch) -> wf.LossOutput:
        self.check_batch(batch)
        valid = batch.valid
        state = self.encode(batch.obs[:, 0])
        obs_err, rew_err, cont_err = [], [], []
        for t in range(batch.seq_len):
            state = self.transition(
                state, batch.actions[:, t], deterministic=not self.config.sample_in_loss
            )
            logits = self.decoder.logits(state["z"])
            obs_err.append(((logits["obs"] - batch.obs[:, t + 1].float()) ** 2).mean(-1))
            rew_err.append((logits["reward"] - batch.rewards[:, t]) ** 2)
            cont_err.append(
                F.binary_cross_entropy_with_logits(
                    logits["continue_logit"], batch.continues[:, t], reduction="none"
                )
            )
        denom = valid.sum().clamp(min=1.0)
        parts = {
            "obs": (torch.stack(obs_err, 1) * valid).sum() / denom,
            "reward": (torch.stack(rew_err, 1) * valid).sum() / denom,
            "continue": (torch.stack(cont_err, 1) * valid).sum() / denom,
        }
        total = parts["obs"] + parts["reward"] + parts["continue"]
        return wf.LossOutput(total, {k: v.detach() for k, v in parts.items()})


@ComponentRegistry.register("toy-recording-conditioner", role="action_conditioner")
class RecordingConditioner(ToyConditioner):
    """Action conditioner override that records every call (and where it came from)."""

    calls: ClassVar[list[str]] = []

    def forward(
        self, action: torch.Tensor, conditions: ConditionPayload | None = None
    ) -> torch.Tensor:
        import inspect

        callers = {frame.function for frame in inspect.stack()[1:8]}
        RecordingConditioner.calls.append("loss" if "loss" in callers else "rollout")
        return super().forward(action, conditions) * 0.0  # ignores the action: detectably different


def plugin() -> dict[str, Any]:
    """Entry point for tests that install this family as a plugin (the ``worldflux`` command)."""
    return {"plugin_api_version": 1, "worldflux_version_range": ">=0.1", "capabilities": ["toy"]}
