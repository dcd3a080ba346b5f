"""The torch backend of the dream core: a world model on a torch device."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..core.model import WorldModel
from ..core.noise import NoiseSpec
from ..core.state import State
from .backend import StepResult


class TorchBackend:
    """A :class:`~worldflux.core.model.WorldModel` on a torch device.

    ``encode`` must be a pure function of the observations (deterministic) so that resets are
    reproducible; the RSSM families encode to the posterior mode. ``bf16`` runs the model under
    bfloat16 autocast (opt-in: faster on recent CPUs and GPUs, less exact).
    """

    def __init__(
        self, model: WorldModel, device: str | torch.device = "cpu", bf16: bool = False
    ) -> None:
        self.device = torch.device(device)
        current = next(iter(model.parameters()), torch.empty(0)).device
        # a model on another device is copied, not moved: others may hold it where it is
        self.model = (
            model if current == self.device else copy.deepcopy(model).to(self.device)
        ).eval()
        self.bf16 = bf16
        self.obs_shape = tuple(model.config.obs_shape)
        self.action_dim = int(model.config.action_dim)
        self.noise_spec: Mapping[str, NoiseSpec] = dict(model.noise_spec())
        self.latent_keys = tuple(model.latent_keys())
        self.decodes_observations = bool(model.decodes_observations)

    def _autocast(self) -> Any:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def _fp32(self, state: State) -> State:
        """The state kept in float32 between steps (only bf16 steps can change its dtype)."""
        if not self.bf16:
            return state
        return State({k: v.float() for k, v in state.tensors.items()})

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

    @torch.inference_mode()
    def encode(self, obs: np.ndarray) -> State:
        with self._autocast():
            state = self.model.encode(self._tensor(obs))
        return self._fp32(state)

    @torch.inference_mode()
    def step(
        self, state: State, action: np.ndarray, noise: Mapping[str, np.ndarray]
    ) -> tuple[State, StepResult]:
        torch_noise = {k: self._tensor(v) for k, v in noise.items()} if noise else None
        with self._autocast():
            nxt = self.model.transition(state, self._tensor(action), noise=torch_noise)
            out = self.model.decode(nxt)
        nxt = self._fp32(nxt)

        def host(x: torch.Tensor) -> np.ndarray:
            return x.detach().float().cpu().numpy()

        return nxt, StepResult(
            obs=host(out.obs) if self.decodes_observations else None,
            reward=host(out.reward),
            continue_prob=host(out.continue_prob),
            uncertainty=None if out.uncertainty is None else host(out.uncertainty),
        )

    def latent(self, state: State) -> np.ndarray:
        parts = [state[k].detach().float().flatten(1) for k in self.latent_keys]
        return torch.cat(parts, 1).cpu().numpy()

    @torch.inference_mode()
    def update(self, state: State, action: np.ndarray, obs: np.ndarray) -> State:
        """The posterior (filter) step after ``action`` ``[N, A]``, seeing ``obs`` ``[N, *O]``:
        how a deployed policy tracks the latent state of a real environment."""
        with self._autocast():
            nxt = self.model.update(state, self._tensor(action), self._tensor(obs))
        return self._fp32(nxt)

    def replace(self, state: State, index: np.ndarray, new: State) -> State:
        idx = torch.as_tensor(index, dtype=torch.long, device=self.device)
        tensors = {}
        for key, value in state.tensors.items():
            value = value.clone()
            value[idx] = new[key].to(value.dtype)
            tensors[key] = value
        return State(tensors)
