"""The mbrl-lib peer of ``planners.py``: mbrl-lib 0.2.0's planning agent, one env at a time
(``TrajectoryOptimizerAgent.act(obs)`` per env; each call scores its population through
``ModelEnv.evaluate_action_sequences``), as its PETS and MBPO-style planners run.

mbrl-lib pins old releases (hydra-core 1.0, gymnasium 0.26), so it lives in a side folder put on
``sys.path`` for the benchmark only, never in the project's environment. The versions used (the
benchmark needs only mbrl-lib's models and optimizers, which run on these)::

    pip install --target runs/mbrl-side --no-deps mbrl==0.2.0 hydra-core==1.3.8 \\
        omegaconf==2.4.0 antlr4-python3-runtime==4.9.3 termcolor==3.3.0 pyyaml

Its model is parameter-matched to ``ensemble:small``: 7 Gaussian MLPs of 4 x 200 SiLU layers on
the normalised observation and action, predicting the observation change and the reward, and it
propagates each candidate through one member drawn at random (``random_model``, PETS's TS-1)
with one particle per candidate; WorldFlux's partitioned ensemble with sampled transitions does
the same work per row. (mbrl-lib's PETS examples use 20 particles per candidate, 20x the rows
per call for both libraries alike.) ``random_model`` needs a population that divides among the 7
members, so 512 samples become 511. Its MPPI weights every candidate, WorldFlux's the top 64;
the model's forward pass dominates both.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np
import torch

MEMBERS = 7


class _Spaces:
    """The two attributes of a gym env that mbrl-lib's ModelEnv reads."""

    def __init__(self, obs_dim: int, action_dim: int) -> None:
        import gymnasium as gym

        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (action_dim,), np.float32)


def mbrl_agents(
    path: str,
    *,
    kind: str,
    obs_dim: int,
    action_dim: int,
    envs: int,
    horizon: int,
    samples: int,
    elites: int,
    iterations: int,
) -> tuple[Callable[[np.ndarray], None], int]:
    """One mbrl-lib planning agent per env over one shared model, and its parameter count.

    Returns ``(plan_all, parameters)``: ``plan_all(obs [envs, obs_dim])`` calls every agent's
    ``act`` on its own observation, one after another.
    """
    if path not in sys.path:
        sys.path.insert(0, path)  # the side folder, for this benchmark's process only
    import omegaconf
    from mbrl.models import GaussianMLP, ModelEnv, OneDTransitionRewardModel
    from mbrl.planning import create_trajectory_optim_agent_for_model

    net = GaussianMLP(
        in_size=obs_dim + action_dim,
        out_size=obs_dim + 1,
        device="cpu",
        num_layers=4,
        ensemble_size=MEMBERS,
        hid_size=200,
        propagation_method="random_model",
        activation_fn_cfg={"_target_": "torch.nn.SiLU"},
    )
    model = OneDTransitionRewardModel(net, target_is_delta=True, learned_rewards=True)
    generator = torch.Generator().manual_seed(0)

    def never_ends(act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(next_obs), 1, dtype=torch.bool)

    samples -= samples % MEMBERS  # random_model splits the population evenly among the members
    model_env = ModelEnv(_Spaces(obs_dim, action_dim), model, never_ends, generator=generator)
    if kind == "cem":
        optimizer = {
            "_target_": "mbrl.planning.CEMOptimizer",
            "num_iterations": iterations,
            "elite_ratio": elites / samples,
            "population_size": samples,
            "alpha": 0.1,
            "lower_bound": "???",
            "upper_bound": "???",
            "device": "cpu",
        }
    else:
        optimizer = {
            "_target_": "mbrl.planning.MPPIOptimizer",
            "num_iterations": iterations,
            "population_size": samples,
            "gamma": 2.0,
            "sigma": 1.0,
            "beta": 0.6,
            "lower_bound": "???",
            "upper_bound": "???",
            "device": "cpu",
        }
    config = omegaconf.OmegaConf.create(
        {
            "_target_": "mbrl.planning.TrajectoryOptimizerAgent",
            "_recursive_": False,  # hydra >= 1.1 instantiates nested configs; 1.0 (the pin) did not
            "action_lb": "???",
            "action_ub": "???",
            "planning_horizon": horizon,
            "optimizer_cfg": optimizer,
            "replan_freq": 1,
            "verbose": False,
        }
    )
    agents = [
        create_trajectory_optim_agent_for_model(model_env, config.copy(), num_particles=1)
        for _ in range(envs)
    ]

    def plan_all(obs: np.ndarray) -> None:
        for agent, row in zip(agents, obs, strict=True):
            agent.act(row)

    return plan_all, sum(p.numel() for p in net.parameters())
