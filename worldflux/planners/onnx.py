"""Planning with an exported model on ONNX Runtime: :class:`OnnxStepper` runs the ``step.onnx``
graph of a model exported by :mod:`worldflux.export.onnx` (the graph of its dream env) for the
planners, so planning from encoded observations needs the artifact's graphs, not the torch
model.

    backend = OnnxBackend(export_graphs(model, example_obs), threads=1)
    stepper = OnnxStepper(backend)
    planner = MPPIPlanner(stepper, sample_transitions=True, horizon=5, num_samples=512)
    action = planner.plan(stepper.encode(obs)).action  # obs [B, *O] -> [B, A]

The step graph samples every transition from explicit noise inputs (what makes the dream env's
seeded trajectories reproducible), so it has no deterministic mode: planners over it draw that
noise from their seeded generator (``sample_transitions=True``, trajectory sampling as in PETS),
and then score the same candidates as the torch model given the same seed, to float rounding
(which can swap two elites whose scores tie to ~1e-7). The value and policy prior of a family
that has them (TD-MPC2) are not in the graphs, so planning with them stays on torch.

Start states come from the ``encode`` graph (:meth:`OnnxStepper.encode`). There is no graph of
the posterior ``update``, so :class:`~worldflux.planners.MPCPolicy` (which filters a real
episode's observations with ``encode`` then ``update``) runs on torch; re-encoding every
observation with :meth:`OnnxStepper.encode` is the same only for models whose state is the
observation (the ensemble), not for recurrent filters (DreamerV3, PlaNet).

Runs on the CPU session of the backend (float32 states and actions go between torch and ONNX
Runtime without copies); on a GPU plan with the torch model on ``device="cuda"``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from ..core.errors import ConfigError, ContractError
from ..core.noise import NoiseSpec
from ..core.state import State
from ..dream.onnx_backend import OnnxBackend
from .scoring import ImaginedStep, latent_features


class OnnxStepper:
    """An :class:`~worldflux.dream.onnx_backend.OnnxBackend` as a planner's
    :class:`~worldflux.planners.scoring.Stepper`.

    Args:
        backend: a CPU backend (``device="cpu"``); give it ``threads`` to match the planner's
            torch threads when comparing the two.

    Raises:
        ConfigError: a backend on CUDA.
    """

    def __init__(self, backend: OnnxBackend) -> None:
        if not isinstance(backend, OnnxBackend):
            raise ConfigError(
                f"OnnxStepper.backend: expected an OnnxBackend, got {type(backend).__name__}."
            )
        if backend.cuda:
            raise ConfigError(
                "OnnxStepper.backend: expected a CPU backend (device='cpu'), got one on CUDA; on "
                "a GPU plan with the torch model on device='cuda'."
            )
        self.backend = backend
        self.action_dim = int(backend.action_dim)
        self.device = torch.device("cpu")
        self.deterministic_steps = not backend.noise_spec

    def noise_spec(self) -> Mapping[str, NoiseSpec]:
        return self.backend.noise_spec

    def latent(self, state: State) -> torch.Tensor:
        return latent_features(state, tuple(self.backend.latent_keys))

    def encode(self, obs: np.ndarray | torch.Tensor) -> State:
        """Observations ``[B, *O]`` (the model's layout) -> the planners' start state (B rows)."""
        array = obs.detach().cpu().numpy() if isinstance(obs, torch.Tensor) else np.asarray(obs)
        shape = tuple(self.backend.obs_shape)
        if array.ndim != len(shape) + 1 or tuple(array.shape[1:]) != shape or len(array) < 1:
            raise ContractError(
                f"OnnxStepper.encode: expected observations of shape [B, *{list(shape)}] "
                f"(B >= 1), got {list(array.shape)}."
            )
        encoded = self.backend.encode(array)
        return State({k: torch.from_numpy(v) for k, v in encoded.items()})

    def step(
        self,
        state: State,
        action: torch.Tensor,
        *,
        deterministic: bool,
        noise: Mapping[str, torch.Tensor] | None,
    ) -> ImaginedStep:
        spec = self.backend.noise_spec
        if spec and (deterministic or noise is None):  # planners check this when they are built
            raise ConfigError(
                f"OnnxStepper: the exported step graph samples every transition from the noise "
                f"inputs {sorted(spec)} and has no deterministic mode; plan with "
                "sample_transitions=True (or with the torch model for deterministic transitions)."
            )
        feed = {k: np.ascontiguousarray(state[k].numpy(), np.float32) for k in self.backend.keys}
        draws = {k: np.ascontiguousarray(v.numpy()) for k, v in (noise or {}).items()}
        nxt, out = self.backend.step(feed, np.ascontiguousarray(action.numpy(), np.float32), draws)
        return ImaginedStep(
            state=State({k: torch.from_numpy(v) for k, v in nxt.items()}),
            reward=torch.from_numpy(out.reward),
            continue_prob=torch.from_numpy(out.continue_prob),
            uncertainty=None if out.uncertainty is None else torch.from_numpy(out.uncertainty),
        )
