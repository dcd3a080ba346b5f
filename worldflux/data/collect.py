"""Writing Minari datasets from any Gymnasium environment with a behaviour policy.

Policies:

* ``random`` - uniform over the action space (seeded);
* an SB3 model file (loaded without unpickling, see :mod:`.sb3_policy`), either deterministic
  (optionally with Gaussian action noise: ``action_noise`` times half the action range, clipped
  to the action space, as D4RL's noisy datasets were) or ``sampled`` from the policy's own action
  distribution, as D4RL's medium datasets were; sampled episodes also store the behaviour
  distribution in Minari's ``infos`` (see :class:`SB3Policy`);
* train-then-collect: an SB3 agent trained on the real environment for a budget of steps; the
  dataset is either its training episodes ("replay", like D4RL's medium-replay) or episodes of the
  final policy ("final", like medium/expert).

Episodes are stored in Minari's layout (observations ``[T+1]``, actions/rewards/terminations/
truncations ``[T]``). Collection stops after ``steps`` transitions; an episode cut there is marked
truncated at its last step. Datasets are written with ``minari.create_dataset_from_buffers`` (no
jax) into a temporary id, their HDF5 file rewritten compactly (:mod:`worldflux.data.compact`:
the same values, a third of the bytes for short episodes), and renamed into place, so a failed
run never leaves a half dataset.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

from .._version import __version__
from ..core.errors import ConfigError
from .compact import compact_hdf5
from .minari_io import datasets_root
from .sb3_policy import (
    load_obs_norm,
    load_sb3_policy,
    policy_name,
    save_sb3_policy,
    vecnormalize_obs_norm,
)
from .spaces import action_layout, observation_layout

Policy = Callable[[np.ndarray], np.ndarray]


class RandomPolicy:
    """Uniform random actions for a batch of observations, from a seeded numpy Generator."""

    name = "random"

    def __init__(self, space: gym.Space[Any], seed: int) -> None:
        self.space = space
        self.rng = np.random.default_rng(seed)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        n = len(obs)
        if isinstance(self.space, gym.spaces.Discrete):
            return self.rng.integers(0, int(self.space.n), size=n)
        assert isinstance(self.space, gym.spaces.Box)
        return self.rng.uniform(
            self.space.low, self.space.high, size=(n, *self.space.shape)
        ).astype(self.space.dtype)


class SB3Policy:
    """A stable-baselines3 policy with optional observation normalisation (from training).

    Actions are the policy's deterministic ones, optionally with ``action_noise`` (Box: Gaussian
    noise of that many half action ranges, clipped; Discrete: the probability of replacing the
    action by a uniformly random one, as epsilon-greedy exploration does), or,
    with ``sample=True``, drawn from the policy's own distribution (PPO/A2C's diagonal Gaussian,
    clipped to the action space as SB3 does when it acts; SAC's squashed Gaussian). Sampling also
    yields the behaviour distribution per step (see :meth:`act`).
    """

    def __init__(
        self,
        policy: Any,
        space: gym.Space[Any],
        *,
        obs_norm: dict[str, Any] | None = None,
        action_noise: float = 0.0,
        sample: bool = False,
        seed: int = 0,
        name: str = "sb3",
    ) -> None:
        if action_noise < 0:
            raise ConfigError(f"action_noise: expected >= 0, got {action_noise}.")
        if isinstance(space, gym.spaces.Discrete) and action_noise > 1:
            raise ConfigError(
                "action_noise on a Discrete action space is the probability of a uniformly "
                f"random action: expected in [0, 1], got {action_noise}."
            )
        if action_noise > 0 and not isinstance(space, gym.spaces.Box | gym.spaces.Discrete):
            raise ConfigError(f"action_noise needs a Box or Discrete action space, got {space}.")
        if sample and action_noise > 0:
            raise ConfigError(
                "sampled actions already follow the policy's own noise: expected "
                f"action_noise=0 with sample=True, got action_noise={action_noise}."
            )
        if sample and not _stochastic(policy):
            raise ConfigError(
                f"sample=True needs a stochastic SB3 policy (PPO, A2C or SAC), got "
                f"{type(policy).__name__}, whose actions are deterministic."
            )
        self.policy = policy
        self.space = space
        self.obs_norm = obs_norm
        self.action_noise = action_noise
        self.sample = sample
        self.rng = np.random.default_rng(seed)
        self.torch_rng = torch.Generator().manual_seed(seed)
        self.name = name
        #: (steps, mean return) evaluations made while training this policy, if any
        self.history: list[tuple[int, float]] = []

    @classmethod
    def from_file(cls, path: str | Path, env: gym.Env[Any, Any], **kwargs: Any) -> SB3Policy:
        return cls(
            load_sb3_policy(path, env),
            env.action_space,
            obs_norm=load_obs_norm(path),
            name=f"sb3:{Path(path).name}",
            **kwargs,
        )

    def _normalise(self, obs: np.ndarray) -> np.ndarray:
        if self.obs_norm is None:
            return obs
        n = self.obs_norm
        return np.clip(
            (obs - n["mean"]) / np.sqrt(n["var"] + n["epsilon"]), -n["clip_obs"], n["clip_obs"]
        ).astype(np.float32)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return self.act(obs)[0]

    def act(self, obs: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Actions for a batch ``obs`` [N, *obs_shape], and what is known of how they were drawn.

        Returns:
            ``(actions [N, *action_shape], info)``. With ``sample=True`` ``info`` holds the
            behaviour distribution of each row: ``action_log_prob`` [N] (log-density of the
            drawn action: before clipping for PPO/A2C, of the squashed action in [-1, 1] for
            SAC), ``action_mean`` and ``action_log_std`` [N, A] (of the Gaussian before clipping
            or squashing). Otherwise ``info`` is empty.
        """
        x = self._normalise(obs)
        if self.sample:
            return self._sample(x)
        actions, _ = self.policy.predict(x, deterministic=True)
        if self.action_noise > 0 and isinstance(self.space, gym.spaces.Discrete):
            random = self.rng.random(len(actions)) < self.action_noise
            uniform = self.rng.integers(0, int(self.space.n), size=len(actions))
            actions = np.where(random, uniform, actions)
        elif self.action_noise > 0:
            assert isinstance(self.space, gym.spaces.Box)
            half = (self.space.high - self.space.low) / 2.0
            actions = actions + self.rng.normal(size=actions.shape) * self.action_noise * half
            actions = np.clip(actions, self.space.low, self.space.high).astype(self.space.dtype)
        return np.asarray(actions), {}

    def _sample(self, x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        from stable_baselines3.common.policies import ActorCriticPolicy
        from stable_baselines3.common.preprocessing import is_image_space

        dist: Any  # torch's Normal (Box) or Categorical (Discrete)
        with torch.no_grad():
            if is_image_space(self.policy.observation_space):  # HWC frames -> the CNN's CHW
                obs_t = self.policy.obs_to_tensor(x)[0]
            else:
                obs_t = torch.as_tensor(x, dtype=torch.float32)
            if isinstance(self.policy, ActorCriticPolicy):
                dist = self.policy.get_distribution(obs_t).distribution
            else:  # SAC: the actor's Gaussian before tanh
                mean, log_std, _ = self.policy.actor.get_action_dist_params(obs_t)
                dist = torch.distributions.Normal(mean, log_std.exp())
            mean, std = dist.mean, dist.stddev
            if isinstance(dist, torch.distributions.Normal):
                raw = mean + std * torch.randn(mean.shape, generator=self.torch_rng)
                log_prob = dist.log_prob(raw).sum(-1)
            else:  # a categorical policy (Discrete actions)
                raw = torch.multinomial(dist.probs, 1, generator=self.torch_rng).squeeze(-1)
                log_prob = dist.log_prob(raw)
            if isinstance(self.policy, ActorCriticPolicy):
                actions = raw.numpy()
            else:  # squashed: the density of the tanh'd action (SAC's own correction)
                actions = torch.tanh(raw).numpy()
                log_prob = log_prob - torch.log1p(-(torch.tanh(raw) ** 2) + 1e-6).sum(-1)
                actions = self.policy.unscale_action(actions)
        info: dict[str, np.ndarray] = {"action_log_prob": log_prob.numpy().astype(np.float32)}
        if isinstance(self.space, gym.spaces.Box):
            actions = np.clip(actions, self.space.low, self.space.high).astype(self.space.dtype)
            info["action_mean"] = mean.numpy().astype(np.float32)
            info["action_log_std"] = std.log().numpy().astype(np.float32)
        return actions, info


def _stochastic(policy: Any) -> bool:
    from stable_baselines3.common.policies import ActorCriticPolicy
    from stable_baselines3.sac.policies import SACPolicy

    return isinstance(policy, ActorCriticPolicy | SACPolicy)


@dataclass
class EpisodeRecorder:
    """Accumulates one episode of one environment in Minari's layout."""

    observations: list[np.ndarray] = field(default_factory=list)
    actions: list[Any] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    terminations: list[bool] = field(default_factory=list)
    truncations: list[bool] = field(default_factory=list)
    #: per-step facts about each action (e.g. the behaviour policy's log-probability), each a
    #: list aligned with ``actions``
    action_infos: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def finish(self, *, cut: bool = False) -> dict[str, Any]:
        """The episode as arrays; ``cut`` marks an unfinished episode truncated at its last step.

        ``action_infos`` become Minari ``infos`` aligned with ``observations`` ([T+1, ...]): row
        t describes the action taken from observation t; the last row (no action) is NaN.
        """
        truncations = list(self.truncations)
        if cut:
            truncations[-1] = True
        episode: dict[str, Any] = {
            "observations": np.asarray(self.observations),
            "actions": np.asarray(self.actions),
            "rewards": np.asarray(self.rewards, dtype=np.float64),
            "terminations": np.asarray(self.terminations, dtype=bool),
            "truncations": np.asarray(truncations, dtype=bool),
            "cut": np.asarray(cut),  # not stored; tells returns of cut episodes apart
        }
        if self.action_infos:
            infos = {}
            for key, rows in self.action_infos.items():
                values = np.asarray(rows, dtype=np.float32)
                last = np.full((1, *values.shape[1:]), np.nan, dtype=np.float32)
                infos[key] = np.concatenate([values, last])
            episode["infos"] = infos
        return episode


def rollout_episodes(
    env_id: str,
    policy: Policy,
    *,
    steps: int | None = None,
    episodes: int | None = None,
    n_envs: int = 4,
    seed: int = 0,
    progress: bool = True,
    env_kwargs: dict[str, Any] | None = None,
) -> list[dict[str, np.ndarray]]:
    """Run ``policy`` on ``n_envs`` copies of ``env_id`` (one batched policy call per step) until
    ``steps`` transitions or ``episodes`` finished episodes; return the episodes."""
    if (steps is None) == (episodes is None):
        raise ConfigError("rollout_episodes: give exactly one of steps= or episodes=.")
    if (steps is not None and steps < 1) or (episodes is not None and episodes < 1) or n_envs < 1:
        raise ConfigError(
            f"rollout_episodes: expected positive steps/episodes/n_envs, got steps={steps}, "
            f"episodes={episodes}, n_envs={n_envs}."
        )
    if episodes is not None:
        n_envs = min(n_envs, episodes)
    envs = [gym.make(env_id, **(env_kwargs or {})) for _ in range(n_envs)]
    obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
    for i, env in enumerate(envs):
        env.action_space.seed(seed + i)
    recorders = [EpisodeRecorder(observations=[o.copy()]) for o in obs]
    done: list[dict[str, np.ndarray]] = []
    total = 0
    bar = tqdm(
        total=steps or episodes,
        disable=not progress,
        unit="step" if steps else "ep",
        desc=f"collect {env_id}",
        dynamic_ncols=True,
    )
    # with episodes=N each environment plays its own share, so short episodes are not
    # over-represented (finishing first would favour them)
    quota = [0] * n_envs
    if episodes is not None:
        quota = [episodes // n_envs + (i < episodes % n_envs) for i in range(n_envs)]
    played = [0] * n_envs
    try:
        while True:
            active = [i for i in range(n_envs) if episodes is None or played[i] < quota[i]]
            if not active:
                return done
            act = getattr(policy, "act", None)
            actions, info = act(obs) if act is not None else (policy(obs), {})
            for i in active:
                env = envs[i]
                nxt, reward, terminated, truncated, _ = env.step(actions[i])
                rec = recorders[i]
                rec.actions.append(actions[i])
                for key, values in info.items():
                    rec.action_infos.setdefault(key, []).append(values[i])
                rec.rewards.append(float(reward))
                rec.terminations.append(bool(terminated))
                rec.truncations.append(bool(truncated))
                rec.observations.append(np.array(nxt, copy=True))
                total += 1
                if steps is not None:
                    bar.update(1)
                if terminated or truncated:
                    done.append(rec.finish())
                    played[i] += 1
                    if episodes is not None:
                        bar.update(1)
                    nxt, _ = env.reset()
                    recorders[i] = EpisodeRecorder(observations=[np.array(nxt, copy=True)])
                obs[i] = nxt
                if steps is not None and total >= steps:
                    done += [r.finish(cut=True) for r in recorders if r.actions]
                    return done
    finally:
        bar.close()
        for env in envs:
            env.close()


def episode_returns(episodes: list[dict[str, np.ndarray]]) -> np.ndarray:
    return np.asarray([float(ep["rewards"].sum()) for ep in episodes])


def write_dataset(
    dataset_id: str,
    env_id: str,
    episodes: list[dict[str, np.ndarray]],
    *,
    algorithm_name: str,
    description: str,
    ref_min_score: float | None = None,
    ref_max_score: float | None = None,
    extra_metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
    env_kwargs: dict[str, Any] | None = None,
) -> Path:
    """Write ``episodes`` as Minari dataset ``dataset_id``; return its folder.

    The dataset is first written under a temporary id and moved into place when complete.
    ``extra_metadata`` is stored under the ``"worldflux"`` key of Minari's metadata (JSON).
    """
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer
    from minari.dataset.episode_data import EpisodeData  # noqa: F401  (minari import check)

    root = datasets_root()
    target = root / dataset_id
    if target.exists() and not overwrite:
        raise ConfigError(
            f"dataset {dataset_id!r} already exists at {target}; pass overwrite=True "
            "(`--overwrite`) to replace it."
        )
    env = gym.make(env_id, **(env_kwargs or {}))
    observation_layout(env.observation_space)
    action_layout(env.action_space)
    buffers = [
        EpisodeBuffer(
            id=i,
            observations=ep["observations"],
            actions=ep["actions"],
            rewards=list(ep["rewards"]),
            terminations=list(ep["terminations"]),
            truncations=list(ep["truncations"]),
            infos=ep.get("infos"),
        )
        for i, ep in enumerate(episodes)
    ]
    scores: dict[str, Any] = {}
    if ref_max_score is not None:
        scores = {"ref_max_score": ref_max_score, "ref_min_score": ref_min_score}
    staging = Path(tempfile.mkdtemp(prefix=".worldflux-collect-", dir=root))
    try:
        with _datasets_path(staging), warnings.catch_warnings():
            # Minari writes under $MINARI_DATASETS_PATH/<dataset_id>; its nudge for a contact
            # address is not actionable for generated datasets
            warnings.filterwarnings("ignore", message="`author_email` is set to None")
            dataset = minari.create_dataset_from_buffers(
                dataset_id=dataset_id,
                buffer=buffers,
                env=env_id if not env_kwargs else env,
                eval_env=env_id if not env_kwargs else env,
                algorithm_name=algorithm_name,
                author="WorldFlux",
                code_permalink=f"https://github.com/worldflux/worldflux (worldflux {__version__})",
                description=description,
                jpeg_encoding=False,  # lossless: models learn from exactly what was observed
                **scores,
            )
            if extra_metadata:
                extra = {"worldflux": json.loads(json.dumps(extra_metadata))}
                dataset.storage.update_metadata(extra)
            del dataset
        for data_file in (staging / dataset_id).rglob("*.hdf5"):
            compact_hdf5(data_file)  # Minari's layout is mostly bookkeeping for short episodes
        _ensure_namespaces(dataset_id)
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        (staging / dataset_id).rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        env.close()
    return target


@contextmanager
def _datasets_path(path: Path) -> Iterator[None]:
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(path)
    try:
        yield
    finally:
        if old is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def check_dataset_id(dataset_id: str) -> None:
    """Raise :class:`ConfigError` unless Minari accepts ``dataset_id`` (checked before collecting)."""
    from minari.dataset.minari_dataset import parse_dataset_id
    from minari.namespace import validate_namespace

    try:
        namespace = parse_dataset_id(dataset_id)[0]
        if namespace is not None:
            validate_namespace(namespace)
    except ValueError as exc:
        raise ConfigError(
            f"dataset id {dataset_id!r} is not a valid Minari id ({exc}); expected e.g. "
            "'namespace/name-v0' with namespace parts of two or more letters, digits, - or _."
        ) from None


def _ensure_namespaces(dataset_id: str) -> None:
    """Create the Minari namespaces of ``dataset_id`` (e.g. ``a`` and ``a/b`` of ``a/b/c-v0``)
    in the real datasets folder, as ``create_dataset_from_buffers`` would have."""
    from minari.dataset.minari_dataset import parse_dataset_id
    from minari.namespace import create_namespace, list_local_namespaces

    namespace = parse_dataset_id(dataset_id)[0]
    if namespace is None:
        return
    parts = namespace.split("/")
    existing = set(list_local_namespaces())
    for k in range(1, len(parts) + 1):
        name = "/".join(parts[:k])
        if name not in existing:
            create_namespace(name)


TrainMode = Literal["final", "replay"]


class _RecordEpisodes(gym.Wrapper):
    """Records every episode the wrapped env plays (used to keep SB3's training rollouts)."""

    def __init__(self, env: gym.Env[Any, Any], sink: list[dict[str, np.ndarray]]) -> None:
        super().__init__(env)
        self.sink = sink
        self.rec: EpisodeRecorder | None = None

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        if self.rec is not None and self.rec.actions:
            self.sink.append(self.rec.finish(cut=True))
        self.rec = EpisodeRecorder(observations=[np.array(obs, copy=True)])
        return obs, info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        assert self.rec is not None
        self.rec.actions.append(np.asarray(action))
        self.rec.rewards.append(float(reward))
        self.rec.terminations.append(bool(terminated))
        self.rec.truncations.append(bool(truncated))
        self.rec.observations.append(np.array(obs, copy=True))
        if terminated or truncated:
            self.sink.append(self.rec.finish())
            self.rec = None
        return obs, reward, terminated, truncated, info

    def flush(self) -> None:
        if self.rec is not None and self.rec.actions:
            self.sink.append(self.rec.finish(cut=True))
        self.rec = None


ALGORITHMS = ("ppo", "sac", "td3", "a2c", "dqn")


def train_behaviour_policy(
    env_id: str,
    *,
    algo: str = "ppo",
    train_steps: int,
    seed: int = 0,
    n_envs: int = 8,
    normalize: bool = True,
    hyperparams: dict[str, Any] | None = None,
    record: bool = False,
    save_to: str | Path | None = None,
    progress: bool = True,
    target_return: float | None = None,
    eval_every: int = 25_000,
    eval_episodes: int = 5,
) -> tuple[SB3Policy, list[dict[str, np.ndarray]]]:
    """Train an SB3 agent on the real ``env_id``; return it as a behaviour policy and, with
    ``record``, every episode played during training (in order).

    With ``target_return``, the deterministic policy is evaluated every ``eval_every`` steps on
    ``eval_episodes`` episodes, and training stops at the first evaluation whose mean return
    reaches the target (a "medium" policy, as in D4RL) or after ``train_steps``.
    """
    import stable_baselines3 as sb3
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    if algo not in ALGORITHMS:
        raise ConfigError(f"algo: expected one of {list(ALGORITHMS)}, got {algo!r}.")
    recorded: list[dict[str, np.ndarray]] = []
    wrappers: list[_RecordEpisodes] = []

    def wrap(env: gym.Env[Any, Any]) -> gym.Env[Any, Any]:
        if not record:
            return env
        w = _RecordEpisodes(env, recorded)
        wrappers.append(w)
        return w

    venv = make_vec_env(env_id, n_envs=n_envs, seed=seed, wrapper_class=wrap)
    policy_class = policy_name(venv.observation_space, normalize, env_id)
    if normalize:
        venv = VecNormalize(venv, norm_obs=True, norm_reward=True, clip_obs=10.0)
    model = getattr(sb3, algo.upper())(
        policy_class, venv, seed=seed, verbose=0, **(hyperparams or {})
    )
    rollout = getattr(model, "n_steps", 1) * n_envs  # on-policy agents learn in whole rollouts
    if algo in ("ppo", "a2c") and train_steps % rollout:
        runs = -(-train_steps // rollout) * rollout
        print(
            f"note: {algo.upper()} learns in whole rollouts of n_steps x n_envs = {rollout:,} "
            f"steps, so train_steps={train_steps:,} runs {runs:,} steps"
            + (" (or fewer: training stops at target_return)" if target_return else "")
            + ".",
            file=sys.stderr,
        )
    eval_env = gym.make(env_id)

    def current_policy() -> SB3Policy:
        return SB3Policy(
            model.policy,
            eval_env.action_space,
            obs_norm=vecnormalize_obs_norm(venv),
            seed=seed,
            name=f"{algo} {env_id}",
        )

    history: list[tuple[int, float]] = []
    # (mean return, policy weights, observation normalisation) of the latest evaluation
    snapshots: list[tuple[float, dict[str, Any], dict[str, Any] | None]] = []

    class StopAtTarget(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.next_eval = eval_every

        def _on_step(self) -> bool:
            if target_return is None or self.num_timesteps < self.next_eval:
                return True
            self.next_eval += eval_every
            episodes = rollout_episodes(
                env_id,
                current_policy(),
                episodes=eval_episodes,
                n_envs=eval_episodes,
                seed=seed + 30_000,
                progress=False,
            )
            mean = float(episode_returns(episodes).mean())
            history.append((self.num_timesteps, mean))
            snapshot = current_policy()
            weights = {k: v.detach().clone() for k, v in model.policy.state_dict().items()}
            snapshots[:] = [*snapshots[-1:], (mean, weights, snapshot.obs_norm)]
            if progress:
                tqdm.write(f"{self.num_timesteps} steps: deterministic return {mean:.1f}")
            return mean < target_return

    model.learn(total_timesteps=train_steps, progress_bar=progress, callback=StopAtTarget())
    for w in wrappers:
        w.flush()
    policy = current_policy()
    if target_return is not None and snapshots and snapshots[-1][0] >= target_return:
        # returns can jump between evaluations: keep whichever of the last two evaluated
        # policies is closer to the target (the recorded episodes stay as they were played)
        mean, weights, obs_norm = min(snapshots, key=lambda snap: abs(snap[0] - target_return))
        model.policy.load_state_dict(weights)
        policy.obs_norm = obs_norm
        if progress:
            tqdm.write(f"behaviour policy: the one evaluated at return {mean:.1f}")
    policy.history = history
    if save_to is not None:
        # for acting: without the optimiser states (a CNN's Adam moments would double an Atari
        # policy's 2.4 MB)
        save_sb3_policy(model, save_to, policy.obs_norm)
    venv.close()
    eval_env.close()
    return policy, recorded
