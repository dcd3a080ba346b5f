"""`collect_dataset`: one call from a behaviour-policy description to a Minari dataset + report."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from .._version import __version__
from ..core.errors import ConfigError
from .collect import (
    ALGORITHMS,
    Policy,
    RandomPolicy,
    SB3Policy,
    check_dataset_id,
    episode_returns,
    rollout_episodes,
    train_behaviour_policy,
    write_dataset,
)
from .minari_io import datasets_root
from .spaces import action_layout, observation_layout


@dataclass
class TrainSpec:
    """How to train a behaviour policy on the real environment (stable-baselines3)."""

    algo: str = "ppo"
    train_steps: int = 1_000_000
    n_envs: int = 8
    normalize: bool = True
    hyperparams: dict[str, Any] = field(default_factory=dict)
    save_to: str | None = None
    #: stop training once the deterministic policy's mean return reaches this (None: never)
    target_return: float | None = None
    eval_every: int = 25_000

    def run(
        self, env_id: str, seed: int, *, record: bool, save: bool, progress: bool
    ) -> tuple[SB3Policy, list[dict[str, np.ndarray]]]:
        """Train as described; save to ``save_to`` when ``save``; see ``train_behaviour_policy``."""
        return train_behaviour_policy(
            env_id,
            algo=self.algo,
            train_steps=self.train_steps,
            seed=seed,
            n_envs=self.n_envs,
            normalize=self.normalize,
            hyperparams=self.hyperparams,
            record=record,
            save_to=self.save_to if save else None,
            target_return=self.target_return,
            eval_every=self.eval_every,
            progress=progress,
        )

    def __post_init__(self) -> None:
        if self.algo not in ALGORITHMS:
            raise ConfigError(f"algo: expected one of {list(ALGORITHMS)}, got {self.algo!r}.")
        if self.train_steps < 1:
            raise ConfigError(f"train_steps: expected >= 1, got {self.train_steps}.")


@dataclass
class CollectSpec:
    """Everything ``worldflux collect`` needs.

    Attributes:
        env_id: Gymnasium id of the real environment.
        dataset_id: Minari id to write, e.g. ``"worldflux/walker2d/medium-v0"``.
        policy: ``"random"``, a path to an SB3 zip, or ``"train"`` (see ``train``).
        mode: with ``policy="train"``: ``"final"`` (episodes of the trained policy) or
            ``"replay"`` (the episodes played during training).
        steps: transitions to collect (``final``/``random``/file policies).
        action_noise: Gaussian noise, in units of half the action range (file/trained policies).
        actions: ``"deterministic"`` (the policy's mean action, plus ``action_noise``) or
            ``"sampled"`` (drawn from the policy's own distribution, as D4RL's medium data; the
            behaviour log-probabilities go into the dataset's ``infos``). File/trained policies.
        train: training settings when ``policy="train"`` (or when a ``train.save_to`` file
            does not exist yet for ``policy`` = that file).
        score_episodes: episodes used to measure random and behaviour returns.
        ref_max_score: reference "expert" return for Minari's normalised score (None: not set).
    """

    env_id: str
    dataset_id: str
    policy: str = "random"
    mode: Literal["final", "replay"] = "final"
    steps: int | None = 100_000
    action_noise: float = 0.0
    actions: Literal["deterministic", "sampled"] = "deterministic"
    n_envs: int = 8
    seed: int = 0
    train: TrainSpec | None = None
    score_episodes: int = 20
    ref_max_score: float | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.actions not in ("deterministic", "sampled"):
            raise ConfigError(
                f"actions: expected 'deterministic' or 'sampled', got {self.actions!r}."
            )
        if self.actions == "sampled" and self.policy == "random":
            raise ConfigError("actions='sampled' needs a trained policy, got policy='random'.")
        if self.actions == "sampled" and self.action_noise > 0:
            raise ConfigError(
                "actions='sampled' follows the policy's own noise: expected action_noise=0, "
                f"got {self.action_noise}."
            )
        if self.mode not in ("final", "replay"):
            raise ConfigError(f"mode: expected 'final' or 'replay', got {self.mode!r}.")
        if self.mode == "replay" and self.policy != "train":
            raise ConfigError("mode='replay' keeps training episodes: it needs policy='train'.")
        if self.policy == "train" and self.train is None:
            raise ConfigError("policy='train' needs train settings (TrainSpec).")
        if self.mode == "final" and (self.steps is None or self.steps < 1):
            raise ConfigError(f"steps: expected >= 1, got {self.steps}.")
        if self.score_episodes < 1:
            raise ConfigError(f"score_episodes: expected >= 1, got {self.score_episodes}.")


@dataclass
class MixPart:
    """One source of a mixed dataset: the dataset ``spec`` builds (recipe ``recipe``; built
    when missing), its first ``steps`` transitions in whole episodes (all of it when None)."""

    recipe: str
    spec: CollectSpec
    steps: int | None = None

    def __post_init__(self) -> None:
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"mix part {self.recipe!r}: steps expected >= 1, got {self.steps}.")


@dataclass
class MixSpec:
    """A dataset made of the episodes of other recipes' datasets, like D4RL's mixed
    ("full-replay") datasets: data that covers good play and failure alike.

    Attributes:
        env_id, dataset_id, ref_max_score, description: as in :class:`CollectSpec`.
        parts: the sources, in order (:class:`MixPart`).
    """

    env_id: str
    dataset_id: str
    parts: list[MixPart]
    ref_max_score: float | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not self.parts:
            raise ConfigError(f"mixed dataset {self.dataset_id!r}: expected parts, got none.")


@dataclass
class CollectReport:
    dataset_id: str
    path: str
    episodes: int
    steps: int
    size_mb: float
    dataset_return_mean: float
    dataset_return_std: float
    behaviour_return_mean: float
    behaviour_return_std: float
    random_return_mean: float
    wall_time_s: float

    @property
    def bytes_per_step(self) -> float:
        """Bytes on disk per recorded transition (``nan`` for an empty dataset)."""
        return self.size_mb * 2**20 / self.steps if self.steps else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "bytes_per_step": round(self.bytes_per_step, 1)}

    def summary(self) -> str:
        return (
            f"{self.dataset_id}: {self.episodes} episodes, {self.steps} steps, "
            f"{self.size_mb:.1f} MB ({self.bytes_per_step:.0f} bytes/step) at {self.path}\n"
            f"  dataset return {self.dataset_return_mean:.1f} +- {self.dataset_return_std:.1f} "
            f"(complete episodes); behaviour policy "
            + (
                "a mixture"
                if math.isnan(self.behaviour_return_mean)
                else f"{self.behaviour_return_mean:.1f} +- {self.behaviour_return_std:.1f}"
            )
            + f"; random {self.random_return_mean:.1f}; {self.wall_time_s:.0f} s"
        )


def _dir_size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def _complete(episodes: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """Episodes that ended by termination or the environment's time limit (not cut by us)."""
    done = [ep for ep in episodes if not bool(ep["cut"])]
    return done or episodes


def _first_steps(
    dataset: Any, steps: int | None, time_limit: int | None
) -> list[dict[str, np.ndarray]]:
    """Whole episodes of a Minari ``dataset``, in order, until ``steps`` transitions (all: None).
    An episode counts as ``cut`` (by its collection's step budget, not by the game) unless it
    terminated or ran the environment's ``time_limit`` steps."""
    episodes, total = [], 0
    for ep in dataset.iterate_episodes():
        if steps is not None and total >= steps:
            break
        episodes.append(
            {
                "observations": np.asarray(ep.observations),
                "actions": np.asarray(ep.actions),
                "rewards": np.asarray(ep.rewards, dtype=np.float64),
                "terminations": np.asarray(ep.terminations, dtype=bool),
                "truncations": np.asarray(ep.truncations, dtype=bool),
                "cut": np.asarray(not bool(ep.terminations[-1]) and len(ep.actions) != time_limit),
            }
        )
        total += len(ep.actions)
    return episodes


def mix_datasets(spec: MixSpec, *, overwrite: bool = False, progress: bool = True) -> CollectReport:
    """Write the mixed dataset ``spec`` describes (building missing parts first)."""
    from .minari_io import load_minari_dataset

    start = time.time()
    check_dataset_id(spec.dataset_id)
    target = datasets_root() / spec.dataset_id
    if target.exists() and not overwrite:
        raise ConfigError(
            f"dataset {spec.dataset_id!r} already exists at {target}; pass overwrite=True "
            "(`--overwrite`) to replace it."
        )
    episodes: list[dict[str, np.ndarray]] = []
    taken, metas = [], []
    for part in spec.parts:
        sub = part.spec
        if sub.env_id != spec.env_id:
            raise ConfigError(
                f"mixed dataset {spec.dataset_id!r} is for {spec.env_id!r}, but its part "
                f"{part.recipe!r} is for {sub.env_id!r}."
            )
        if not (datasets_root() / sub.dataset_id / "data").exists():
            print(f"building part {part.recipe} ({sub.dataset_id})")
            collect_dataset(sub, progress=progress)
        dataset = load_minari_dataset(sub.dataset_id)
        got = _first_steps(dataset, part.steps, gym.spec(spec.env_id).max_episode_steps)
        episodes += got
        metas.append(dict(dataset.storage.metadata.get("worldflux", {})))
        taken.append(
            {
                "recipe": part.recipe,
                "dataset": sub.dataset_id,
                "episodes": len(got),
                "steps": int(sum(len(ep["actions"]) for ep in got)),
            }
        )
    random_return = next((m["random_return"] for m in metas if "random_return" in m), None)
    data_returns = episode_returns(_complete(episodes))
    steps = int(sum(len(ep["actions"]) for ep in episodes))
    meta = {
        "worldflux_version": __version__,
        "env_id": spec.env_id,
        "behaviour_policy": "mixture",
        "parts": taken,
        "random_return": random_return,
        "dataset_return": {"mean": float(data_returns.mean()), "std": float(data_returns.std())},
    }
    names = ", ".join(f"{t['recipe']} ({t['steps']} steps)" for t in taken)
    path = write_dataset(
        spec.dataset_id,
        spec.env_id,
        episodes,
        algorithm_name="mixture",
        description=spec.description or f"episodes of {names} on {spec.env_id}",
        ref_min_score=None if random_return is None else float(random_return["mean"]),
        ref_max_score=spec.ref_max_score if random_return is not None else None,
        extra_metadata=meta,
        overwrite=overwrite,
    )
    nan = float("nan")
    return CollectReport(
        dataset_id=spec.dataset_id,
        path=str(path),
        episodes=len(episodes),
        steps=steps,
        size_mb=_dir_size_mb(path),
        dataset_return_mean=float(data_returns.mean()),
        dataset_return_std=float(data_returns.std()),
        behaviour_return_mean=nan,
        behaviour_return_std=nan,
        random_return_mean=nan if random_return is None else float(random_return["mean"]),
        wall_time_s=time.time() - start,
    )


def collect_dataset(
    spec: CollectSpec | MixSpec, *, overwrite: bool = False, progress: bool = True
) -> CollectReport:
    """Collect and write the dataset ``spec`` describes; return what was built."""
    if isinstance(spec, MixSpec):
        return mix_datasets(spec, overwrite=overwrite, progress=progress)
    start = time.time()
    check_dataset_id(spec.dataset_id)
    target = datasets_root() / spec.dataset_id
    if target.exists() and not overwrite:
        raise ConfigError(
            f"dataset {spec.dataset_id!r} already exists at {target}; pass overwrite=True "
            "(`--overwrite`) to replace it."
        )
    probe = gym.make(spec.env_id)
    observation_layout(probe.observation_space)
    action_layout(probe.action_space)
    if spec.action_noise > 0 and not isinstance(probe.action_space, gym.spaces.Box):
        raise ConfigError(f"action_noise needs a Box action space, got {probe.action_space}.")
    policy: Policy
    recorded: list[dict[str, np.ndarray]] = []
    if spec.policy == "random":
        policy = RandomPolicy(probe.action_space, spec.seed)
        name = "random"
    elif spec.policy == "train":
        assert spec.train is not None
        t = spec.train
        # an existing policy file is kept: it is the one the "final" datasets were built from
        keep = t.save_to is not None and Path(t.save_to).exists()
        trained, recorded = t.run(
            spec.env_id, spec.seed, record=spec.mode == "replay", save=not keep, progress=progress
        )
        trained = SB3Policy(
            trained.policy,
            probe.action_space,
            obs_norm=trained.obs_norm,
            action_noise=spec.action_noise,
            sample=spec.actions == "sampled",
            seed=spec.seed,
            name=trained.name,
        )
        policy, name = trained, f"{t.algo} trained {t.train_steps} steps"
    else:
        path = Path(spec.policy)
        if not path.is_file():
            if spec.train is None or spec.train.save_to is None:
                raise ConfigError(f"policy file {path} does not exist.")
            # train the missing behaviour policy once; later runs reuse the saved file
            t = spec.train
            spec.train.run(spec.env_id, spec.seed, record=False, save=True, progress=progress)
        policy = SB3Policy.from_file(
            path,
            probe,
            action_noise=spec.action_noise,
            sample=spec.actions == "sampled",
            seed=spec.seed,
        )
        name = f"sb3 {path.name}" + (f" + noise {spec.action_noise}" if spec.action_noise else "")
        name += " (sampled actions)" if spec.actions == "sampled" else ""

    if spec.mode == "replay":
        episodes = recorded
    else:
        episodes = rollout_episodes(
            spec.env_id,
            policy,
            steps=spec.steps,
            n_envs=spec.n_envs,
            seed=spec.seed,
            progress=progress,
        )
    random_returns = episode_returns(
        rollout_episodes(
            spec.env_id,
            RandomPolicy(probe.action_space, spec.seed + 10_000),
            episodes=spec.score_episodes,
            n_envs=min(8, spec.score_episodes),
            seed=spec.seed + 10_000,
            progress=False,
        )
    )
    behaviour_returns = episode_returns(
        rollout_episodes(
            spec.env_id,
            policy,
            episodes=spec.score_episodes,
            n_envs=min(8, spec.score_episodes),
            seed=spec.seed + 20_000,
            progress=False,
        )
    )
    data_returns = episode_returns(_complete(episodes))
    steps = int(sum(len(ep["actions"]) for ep in episodes))
    meta = {
        "worldflux_version": __version__,
        "env_id": spec.env_id,
        "behaviour_policy": name,
        "spec": {k: v for k, v in asdict(spec).items() if k != "train"},
        "train": asdict(spec.train) if spec.train else None,
        "random_return": {
            "mean": float(random_returns.mean()),
            "std": float(random_returns.std()),
            "episodes": len(random_returns),
        },
        "behaviour_return": {
            "mean": float(behaviour_returns.mean()),
            "std": float(behaviour_returns.std()),
            "episodes": len(behaviour_returns),
        },
        "dataset_return": {"mean": float(data_returns.mean()), "std": float(data_returns.std())},
    }
    path = write_dataset(
        spec.dataset_id,
        spec.env_id,
        episodes,
        algorithm_name=name,
        description=spec.description or f"{name} on {spec.env_id} ({spec.mode})",
        ref_min_score=float(random_returns.mean()) if spec.ref_max_score is not None else None,
        ref_max_score=spec.ref_max_score,
        extra_metadata=meta,
        overwrite=overwrite,
    )
    probe.close()
    return CollectReport(
        dataset_id=spec.dataset_id,
        path=str(path),
        episodes=len(episodes),
        steps=steps,
        size_mb=_dir_size_mb(path),
        dataset_return_mean=float(data_returns.mean()),
        dataset_return_std=float(data_returns.std()),
        behaviour_return_mean=float(behaviour_returns.mean()),
        behaviour_return_std=float(behaviour_returns.std()),
        random_return_mean=float(random_returns.mean()),
        wall_time_s=time.time() - start,
    )
