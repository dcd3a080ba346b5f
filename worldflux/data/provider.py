"""`MinariBatchProvider`: training batches from a Minari dataset.

Sequences never cross an episode boundary. A window of ``seq_len`` = L steps starts at any step of
an episode (every step equally likely, so the final, terminating transitions are drawn as often
as any other); where the episode ends before the window does, the remaining steps are padding:
``mask`` is 0, actions/rewards/flags are 0, and observations repeat the episode's last one.
``seq_len=1`` gives single transitions (never padded).

Episodes are split into train and validation sets once (seeded by ``split_seed``); normalisation
statistics come from the train split only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from ..core.batch_provider import BatchRequest, Split
from ..core.errors import ConfigError
from ..core.payloads import Batch
from .cache import load_or_build
from .episodes import EpisodeStore
from .minari_io import load_minari_dataset
from .spaces import action_layout, observation_layout

#: Floor for per-dimension standard deviations (constant dimensions would divide by zero).
MIN_STD = 1e-6


@dataclass(frozen=True)
class NormalizationStats:
    """Per-dimension statistics of the train split (float32 numpy arrays).

    Attributes:
        obs_mean, obs_std: ``[*O]`` for vector observations; None for images (scale by 1/255).
        image_mean: ``[C, H, W]`` mean frame of image observations, in pixel / 255 units; None
            for vectors.
        image_std: ``[C]`` standard deviation of each channel around that mean frame (pixel /
            255 units); None for vectors. Frames of a static scene differ only where something
            moves: subtracting the mean frame and scaling by these leaves that part.
        delta_mean, delta_std: ``[*O]`` of ``obs[t+1] - obs[t]`` (vector observations only).
        action_mean, action_std: ``[A]``.
        reward_mean, reward_std: scalars.
    Standard deviations are floored at :data:`MIN_STD`.
    """

    obs_mean: np.ndarray | None
    obs_std: np.ndarray | None
    delta_mean: np.ndarray | None
    delta_std: np.ndarray | None
    action_mean: np.ndarray
    action_std: np.ndarray
    reward_mean: float
    reward_std: float
    image_mean: np.ndarray | None = None
    image_std: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (lists and floats)."""
        return {
            k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()
        }


def _image_mean_std(
    frames: np.ndarray, rows: np.ndarray, chunk: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 frames ``[N, C, H, W]`` at ``rows`` -> their mean frame ``[C, H, W]`` and each
    channel's standard deviation around it ``[C]``, in pixel / 255 units (float64 sums over
    chunks of rows, so no copy of all frames is made)."""
    rows = np.sort(rows)
    total = np.zeros(frames.shape[1:], dtype=np.float64)
    for i in range(0, len(rows), chunk):
        total += frames[rows[i : i + chunk]].sum(0, dtype=np.float64)
    mean = total / (255.0 * len(rows))
    square = np.zeros(frames.shape[1], dtype=np.float64)
    for i in range(0, len(rows), chunk):
        residual = frames[rows[i : i + chunk]] / 255.0 - mean
        square += np.square(residual).sum(axis=(0, 2, 3))
    std = np.sqrt(square / (len(rows) * mean[0].size))
    return mean.astype(np.float32), np.maximum(std, MIN_STD).astype(np.float32)


def _mean_std(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x64 = x.astype(np.float64)
    return (
        x64.mean(0).astype(np.float32),
        np.maximum(x64.std(0), MIN_STD).astype(np.float32),
    )


class MinariBatchProvider:
    """Batches of sequences or transitions from one dataset; implements ``BatchProvider`` and
    ``BatchProviderV2``.

    Args:
        dataset_id: a local Minari dataset id (``MINARI_DATASETS_PATH`` honoured).
        validation_fraction: share of episodes held out (at least one when > 0 and there are
            two or more episodes).
        split_seed: seed of the episode split (keep it fixed to compare runs).
        seed: seed of batch sampling (reproducible sequences of batches).
        device: default device of the batch tensors.
        download: fetch a missing dataset from Minari's remote (fails fast without network);
            None: try for ids outside the project's own ``worldflux/`` namespace.
        cache: keep the decoded arrays in ``$WORLDFLUX_CACHE`` (see :mod:`.cache`) so the next
            load skips HDF5 decoding.
    """

    def __init__(
        self,
        dataset_id: str,
        *,
        validation_fraction: float = 0.1,
        split_seed: int = 0,
        seed: int = 0,
        device: str = "cpu",
        download: bool | None = None,
        cache: bool = True,
    ) -> None:
        dataset = load_minari_dataset(dataset_id, download=download)
        obs_layout = observation_layout(dataset.observation_space)
        act_layout = action_layout(dataset.action_space)

        def decode() -> EpisodeStore:
            episodes = dataset.storage.get_episodes(dataset.episode_indices)
            return EpisodeStore.from_episodes(episodes, obs_layout, act_layout)

        store = load_or_build(Path(dataset.storage.data_path), decode) if cache else decode()
        self._init(store, validation_fraction, split_seed, seed, device)
        self.dataset_id: str | None = dataset_id
        self.observation_space: gym.Space[Any] | None = dataset.observation_space
        self.action_space: gym.Space[Any] | None = dataset.action_space

    @classmethod
    def from_store(
        cls,
        store: EpisodeStore,
        *,
        validation_fraction: float = 0.1,
        split_seed: int = 0,
        seed: int = 0,
        device: str = "cpu",
    ) -> MinariBatchProvider:
        """A provider over episodes already in memory (no Minari dataset on disk)."""
        self = cls.__new__(cls)
        self._init(store, validation_fraction, split_seed, seed, device)
        self.dataset_id = None
        self.observation_space = None
        self.action_space = None
        return self

    def _init(
        self,
        store: EpisodeStore,
        validation_fraction: float,
        split_seed: int,
        seed: int,
        device: str,
    ) -> None:
        if not 0.0 <= validation_fraction < 1.0:
            raise ConfigError(
                f"validation_fraction: expected a value in [0, 1), got {validation_fraction}."
            )
        self.store = store
        self.device = torch.device(device)
        order = np.random.default_rng(split_seed).permutation(store.num_episodes)
        n_val = round(validation_fraction * store.num_episodes)
        if validation_fraction > 0 and store.num_episodes >= 2:
            n_val = min(max(n_val, 1), store.num_episodes - 1)
        self.episodes: dict[Split, np.ndarray] = {
            "validation": np.sort(order[:n_val]),
            "train": np.sort(order[n_val:]),
        }
        self._steps = {split: self._step_rows(eps) for split, eps in self.episodes.items()}
        self._rng = np.random.default_rng(seed)
        self.stats = self._compute_stats()

    def _step_rows(self, episodes: np.ndarray) -> np.ndarray:
        """Global step indices of ``episodes``, in order."""
        return np.flatnonzero(np.isin(self.store.step_episode, episodes)).astype(np.int64)

    def _compute_stats(self) -> NormalizationStats:
        s, steps = self.store, self._steps["train"]
        before, after = s.obs_rows(steps)
        obs_mean = obs_std = delta_mean = delta_std = image_mean = image_std = None
        train_obs = np.concatenate(
            [before, s.obs_starts[self.episodes["train"]] + s.lengths[self.episodes["train"]]]
        )
        if s.obs_layout.kind == "vector":
            obs_mean, obs_std = _mean_std(s.obs[train_obs])
            delta_mean, delta_std = _mean_std(s.obs[after] - s.obs[before])
        else:
            image_mean, image_std = _image_mean_std(s.obs, train_obs)
        action_mean, action_std = _mean_std(s.actions[steps])
        rewards = s.rewards[steps].astype(np.float64)
        return NormalizationStats(
            obs_mean=obs_mean,
            obs_std=obs_std,
            delta_mean=delta_mean,
            delta_std=delta_std,
            action_mean=action_mean,
            action_std=action_std,
            reward_mean=float(rewards.mean()),
            reward_std=float(max(rewards.std(), MIN_STD)),
            image_mean=image_mean,
            image_std=image_std,
        )

    # -- sampling -------------------------------------------------------------------------------
    def num_steps(self, split: Split = "train") -> int:
        return len(self._steps[split])

    def split_steps(self, split: Split = "train") -> np.ndarray:
        """Global step indices (rows of ``store.actions``) of the episodes in ``split``."""
        return self._steps[split]

    def sample(self, batch_size: int, seq_len: int = 1) -> Batch:
        """``batch_size`` training windows of ``seq_len`` steps (``BatchProvider``)."""
        return self.get_batch(BatchRequest(batch_size=batch_size, seq_len=seq_len))

    def get_batch(self, request: BatchRequest) -> Batch:
        """A batch as ``request`` describes (``BatchProviderV2``)."""
        steps = self._steps[request.split]
        if len(steps) == 0:
            raise ConfigError(
                f"split {request.split!r} has no episodes (the dataset has "
                f"{self.store.num_episodes}; validation_fraction decides the split)."
            )
        longest = int(self.store.lengths[self.episodes[request.split]].max())
        if request.seq_len > longest:
            raise ConfigError(
                f"seq_len={request.seq_len} is longer than every episode of split "
                f"{request.split!r} (longest: {longest} steps); use seq_len <= {longest}."
            )
        rng = self._rng if request.seed is None else np.random.default_rng(request.seed)
        starts = steps[rng.integers(0, len(steps), size=request.batch_size)]
        n_ends = round(request.end_fraction * request.batch_size)
        if n_ends:
            starts[:n_ends] = self._starts_before_ends(request, n_ends, rng)
        return self._gather(starts, request.seq_len, request.device)

    def _starts_before_ends(
        self, request: BatchRequest, n: int, rng: np.random.Generator
    ) -> np.ndarray:
        """``n`` window starts ``[n]`` (global step rows), each window holding a termination of
        ``request.split`` at a uniform position (earlier when the episode starts later)."""
        s, steps = self.store, self._steps[request.split]
        ends = steps[s.terminations[steps]]
        if len(ends) == 0:
            raise ConfigError(
                f"BatchRequest.end_fraction={request.end_fraction}: expected terminations in "
                f"split {request.split!r}, got none in its {len(steps)} steps."
            )
        ends = ends[rng.integers(0, len(ends), size=n)]
        first = s.step_starts[s.step_episode[ends]]
        return np.maximum(ends - rng.integers(0, request.seq_len, size=n), first)

    def _gather(self, starts: np.ndarray, seq_len: int, device: str | None) -> Batch:
        s = self.store
        episode = s.step_episode[starts]  # [B]
        t0 = starts - s.step_starts[episode]  # [B] local start
        length = s.lengths[episode][:, None]  # [B, 1]
        local = t0[:, None] + np.arange(seq_len + 1)[None, :]  # [B, L+1]
        mask = local[:, :-1] < length  # [B, L]
        step_rows = s.step_starts[episode][:, None] + np.minimum(local[:, :-1], length - 1)
        obs_rows = s.obs_starts[episode][:, None] + np.minimum(local, length)
        maskf = mask.astype(np.float32)
        target = torch.device(device) if device is not None else self.device
        padded = not bool(mask.all())

        def tensor(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(x).to(target)

        actions = s.actions[step_rows]
        rewards = s.rewards[step_rows]
        terminations = s.terminations[step_rows]
        truncations = s.truncations[step_rows]
        if padded:
            actions *= maskf[..., None]
            rewards *= maskf
            terminations &= mask
            truncations &= mask
        return Batch(
            obs=tensor(s.obs[obs_rows]),
            actions=tensor(actions),
            rewards=tensor(rewards),
            terminations=tensor(terminations),
            truncations=tensor(truncations),
            mask=tensor(maskf) if padded else None,
        )

    # -- sampler state (for exact resume) ------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """JSON-ready sampler state (the RNG); restore with :meth:`load_state_dict`."""
        return {"rng": self._rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "rng" not in state:
            raise ConfigError(f"sampler state: expected key 'rng', got {sorted(state)}.")
        self._rng.bit_generator.state = state["rng"]
