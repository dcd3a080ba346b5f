"""Agent recipes: one TOML file per stable-baselines3 run in imagination (``agents/*.toml``).

Schema (every key but ``env`` and ``budget`` has a default)::

    description = "PPO in the Dreamer-Walker dream"   # one line
    algorithm = "ppo"                     # ppo | sac | td3 | a2c
    env = "WorldFlux/Dreamer-Walker-v0"   # dream env: card name or id, artifact or run folder
    budget = 300_000                      # environment steps in the dream
    n_envs = 16                           # dream environments stepped together
    seed = 0
    backend = "onnx"                      # dream backend: onnx | torch | auto (default: the env's)
    normalize = true                      # VecNormalize observations (applied on the real env too)
    policy_average = 0.0                  # Polyak average of the acting weights, updated after
                                          # every rollout with this decay (0: none); the average
                                          # is what is scored, checkpointed, selected and saved

    [dream]              # dream settings: reset, termination, horizon, penalty, halt, ...
    [hyperparameters]    # keyword arguments of the SB3 algorithm (plain TOML values;
                         # policy_kwargs.activation_fn by name: worldflux.rl.activations)
    [behaviour]          # keep near the dataset's behaviour (worldflux.rl.behaviour)
    clone_steps = 0          # behaviour cloning before training in the dream
    regularise_steps = 0     # behaviour-cloning steps after every rollout
    dataset = "..."          # whose actions (default: the dream's dataset)
    learning_rate = 1e-4     # of the regularisation steps
    [replay]             # MBPO/MOPO-style: dataset transitions in every batch (sac/td3 only)
    real_fraction = 0.05     # share of each training batch drawn from the dataset
    dataset = "..."          # whose transitions (default: the dream's dataset)
    [evaluation]
    env = "Walker2d-v5"  # real environment (default: the dream's source env)
    every = 50_000       # dream steps between evaluations (0: only at the end)
    episodes = 5         # episodes per evaluation, in the real env and in the dream
    final_episodes = 10  # episodes of the final reality-gap evaluation
    actions = "deterministic"  # how the scored policy acts: its most likely action, or
                               # "sampled" from its own distribution (seeded; e.g. Atari, where
                               # the most likely action can leave the ball unserved)
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import resources
from ..core.errors import ConfigError, check_known_keys, unknown_name_message
from ..dream.core import DreamSettings
from ..dream.simulator import Backend
from .activations import resolve_policy_kwargs
from .behaviour import BehaviourSettings
from .replay import OFF_POLICY, ReplaySettings

ALGORITHMS = ("ppo", "sac", "td3", "a2c")
_TOP = {
    "description",
    "algorithm",
    "env",
    "budget",
    "n_envs",
    "seed",
    "backend",
    "normalize",
    "policy_average",
    "dream",
    "hyperparameters",
    "behaviour",
    "replay",
    "evaluation",
}
_EVALUATION = {"env", "every", "episodes", "final_episodes", "actions"}
EVALUATION_ACTIONS = ("deterministic", "sampled")
_BEHAVIOUR = {"clone_steps", "regularise_steps", "learning_rate", "dataset"}
_REPLAY = {"real_fraction", "dataset"}
_BACKENDS = ("onnx", "torch", "auto")


@dataclass
class Evaluation:
    """When and where a dream-trained agent is scored (see the module docstring)."""

    env: str | None = None
    every: int = 50_000
    episodes: int = 5
    final_episodes: int = 10
    actions: str = "deterministic"


@dataclass
class AgentRecipe:
    """One agent recipe (see the module docstring for the keys)."""

    env: str
    budget: int
    algorithm: str = "ppo"
    description: str = ""
    n_envs: int = 16
    seed: int = 0
    backend: Backend | None = None
    normalize: bool = True
    policy_average: float = 0.0
    dream: dict[str, Any] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    behaviour: BehaviourSettings = field(default_factory=BehaviourSettings)
    replay: ReplaySettings = field(default_factory=ReplaySettings)
    evaluation: Evaluation = field(default_factory=Evaluation)
    name: str = "agent"

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ConfigError(unknown_name_message("algorithm", self.algorithm, ALGORITHMS))
        if self.evaluation.actions not in EVALUATION_ACTIONS:
            raise ConfigError(
                unknown_name_message(
                    "evaluation.actions", self.evaluation.actions, EVALUATION_ACTIONS
                )
            )
        if self.backend is not None and self.backend not in _BACKENDS:
            raise ConfigError(unknown_name_message("backend", self.backend, _BACKENDS))
        for key, value, low in (
            ("budget", self.budget, 1),
            ("n_envs", self.n_envs, 1),
            ("evaluation.every", self.evaluation.every, 0),
            ("evaluation.episodes", self.evaluation.episodes, 1),
            ("evaluation.final_episodes", self.evaluation.final_episodes, 1),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(
                    f"agent recipe {key}: expected an integer >= {low}, got {value!r}."
                )
        average = self.policy_average
        if (
            isinstance(average, bool)
            or not isinstance(average, int | float)
            or not (0.0 <= average < 1.0)
        ):
            raise ConfigError(
                f"agent recipe {self.name}: policy_average is the decay of a moving average; "
                f"expected a number in [0, 1), got {average!r}."
            )
        # the dream settings must be valid; a calibrated halt ("p99") is resolved by the simulator
        check = dict(self.dream)
        if isinstance(check.get("halt"), str):
            check["halt"] = 1.0
        DreamSettings.from_dict(check)
        resolve_policy_kwargs(self.hyperparameters)  # an unknown activation name fails here
        if self.replay.active and self.algorithm not in OFF_POLICY:
            raise ConfigError(
                f"agent recipe {self.name}: [replay] mixes dataset transitions into a replay "
                f"buffer; expected algorithm one of {OFF_POLICY}, got {self.algorithm!r}."
            )
        buffer_keys = {
            "replay_buffer_class": lambda v: v is not None,
            "replay_buffer_kwargs": bool,
            "optimize_memory_usage": bool,
            "n_steps": lambda v: v != 1,
        }
        custom = [k for k, used in buffer_keys.items() if k in self.hyperparameters and used(
            self.hyperparameters[k])]  # fmt: skip
        if self.replay.active and custom:
            raise ConfigError(
                f"agent recipe {self.name}: [replay] replaces SB3's plain ReplayBuffer, but "
                f"[hyperparameters] set {', '.join(custom)}; expected none of "
                "replay_buffer_class, replay_buffer_kwargs, optimize_memory_usage or n_steps > 1: "
                "drop those or drop [replay]."
            )
        latent = self.dream.get("observation") == "latent"
        if self.replay.active and latent:
            raise ConfigError(
                f"agent recipe {self.name}: [replay] mixes the dataset's observations into the "
                'batches and cannot feed a latent-observation policy; use observation = "decoded" '
                "or drop [replay]."
            )
        if self.behaviour.active and latent:
            raise ConfigError(
                f"agent recipe {self.name}: [behaviour] clones the dataset's observations and "
                'cannot feed a latent-observation policy; use observation = "decoded" or '
                "drop [behaviour]."
            )


def agents_dir() -> Path:
    """Folder of the project's agent recipes."""
    return resources.data_dir("agents")


def read_agent_recipe(path: str | Path) -> AgentRecipe:
    """Parse one recipe file (clear errors for unknown keys, algorithms and bad values)."""
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML ({exc}).") from None
    check_known_keys(f"key of agent recipe {file.name}", data, _TOP)
    for key in ("env", "budget"):
        if key not in data:
            raise ConfigError(f"agent recipe {file.name}: missing key {key!r}.")
    for table in ("dream", "hyperparameters", "behaviour", "replay", "evaluation"):
        value = data.get(table, {})
        if not isinstance(value, dict):
            raise ConfigError(
                f"agent recipe {file.name}: [{table}] must be a table, got "
                f"{type(value).__name__} {value!r}."
            )
    evaluation = dict(data.pop("evaluation", {}))
    check_known_keys(f"key of [evaluation] of {file.name}", evaluation, _EVALUATION)
    behaviour = dict(data.pop("behaviour", {}))
    check_known_keys(f"key of [behaviour] of {file.name}", behaviour, _BEHAVIOUR)
    replay = dict(data.pop("replay", {}))
    check_known_keys(f"key of [replay] of {file.name}", replay, _REPLAY)
    try:
        settings = BehaviourSettings(**behaviour)
        mixing = ReplaySettings(**replay)
    except ConfigError as exc:
        raise ConfigError(f"agent recipe {file.name}: {exc}") from None
    return AgentRecipe(
        **data,
        behaviour=settings,
        replay=mixing,
        evaluation=Evaluation(**evaluation),
        name=file.stem,
    )


def find_agent_recipe(name_or_path: str | Path) -> AgentRecipe:
    """A recipe file path, or the name of one in ``agents/`` (e.g. ``ppo-dreamer-walker``)."""
    path = Path(name_or_path)
    if path.is_file():
        return read_agent_recipe(path)
    folder = agents_dir()
    names = sorted(p.stem for p in folder.glob("*.toml"))
    if str(name_or_path) not in names:
        raise ConfigError(unknown_name_message("agent recipe", str(name_or_path), names))
    return read_agent_recipe(folder / f"{name_or_path}.toml")
