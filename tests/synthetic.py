"""A synthetic control system with known dynamics, for learning tests.

``x' = A x + B a``, reward ``r = w . a + 0.1 x[0]`` (depends on the *current* action, so a model
whose rewards are shifted by one step cannot fit it), termination when ``|x'[0]| > limit``.
"""

from __future__ import annotations

import numpy as np
import torch

import worldflux as wf

OBS_DIM, ACTION_DIM = 4, 2


def system(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(OBS_DIM, OBS_DIM, generator=g))
    a = 0.95 * q  # a stable rotation
    b = 0.5 * torch.randn(OBS_DIM, ACTION_DIM, generator=g)
    w = torch.tensor([1.0, -2.0])
    return a, b, w


def sample_batch(
    n: int, steps: int, seed: int, limit: float = 1.0, nonlinear: bool = False
) -> wf.Batch:
    """``n`` sequences of ``steps`` transitions; a terminated sequence is padded (mask 0).

    ``nonlinear`` adds ``0.4 sin(2 x)`` to the dynamics and ``0.5 cos(3 x[1])`` to the reward, so
    a linear model cannot fit them.
    """
    a, b, w = system()
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, OBS_DIM, generator=g) * 2 - 1
    obs, acts, rews, terms, mask = [x], [], [], [], []
    alive = torch.ones(n)
    for _ in range(steps):
        u = torch.rand(n, ACTION_DIM, generator=g) * 2 - 1
        nxt = x @ a.T + u @ b.T
        r = u @ w + 0.1 * x[:, 0]
        if nonlinear:
            nxt = nxt + 0.4 * torch.sin(2 * x)
            r = r + 0.5 * torch.cos(3 * x[:, 1])
        done = (nxt[:, 0].abs() > limit).float() * alive
        obs.append(nxt)
        acts.append(u)
        rews.append(r)
        terms.append(done)
        mask.append(alive.clone())
        alive = alive * (1 - done)
        x = nxt
    return wf.Batch(
        obs=torch.stack(obs, 1),
        actions=torch.stack(acts, 1),
        rewards=torch.stack(rews, 1),
        terminations=torch.stack(terms, 1),
        truncations=torch.zeros(n, steps),
        mask=torch.stack(mask, 1),
    )


def moving_dot_episodes(
    episodes: int, steps: int, size: int = 16, seed: int = 0, dot: int = 2
) -> list[dict[str, np.ndarray]]:
    """A ``dot x dot`` white square on a black ``size x size`` RGB image, moved one pixel per step by a
    Discrete(4) action (up, down, left, right; walls stop it). Reward: 1 when it touches the
    right wall. Minari layout, HWC uint8 observations."""
    rng = np.random.default_rng(seed)
    moves = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]])
    out = []
    for _ in range(episodes):
        pos = rng.integers(0, size - dot + 1, size=2)
        frames, actions, rewards = [], [], []
        for t in range(steps + 1):
            img = np.zeros((size, size, 3), np.uint8)
            img[pos[0] : pos[0] + dot, pos[1] : pos[1] + dot] = 255
            frames.append(img)
            if t == steps:
                break
            a = int(rng.integers(0, 4))
            pos = np.clip(pos + moves[a], 0, size - dot)
            actions.append(a)
            rewards.append(float(pos[1] == size - dot))
        out.append(
            {
                "observations": np.stack(frames),
                "actions": np.asarray(actions),
                "rewards": np.asarray(rewards),
                "terminations": np.zeros(steps, bool),
                "truncations": np.eye(steps, dtype=bool)[-1],
            }
        )
    return out


def dot_windows(
    episodes: list[dict[str, np.ndarray]], n: int, steps: int, rng: np.random.Generator
) -> wf.Batch:
    """``n`` random windows of ``steps`` transitions; images CHW uint8, one-hot actions."""
    obs, actions, rewards = [], [], []
    for _ in range(n):
        ep = episodes[rng.integers(len(episodes))]
        start = rng.integers(0, len(ep["actions"]) - steps + 1)
        obs.append(ep["observations"][start : start + steps + 1])
        actions.append(np.eye(4, dtype=np.float32)[ep["actions"][start : start + steps]])
        rewards.append(ep["rewards"][start : start + steps])
    return wf.Batch(
        obs=torch.from_numpy(np.stack(obs)).permute(0, 1, 4, 2, 3).contiguous(),
        actions=torch.from_numpy(np.stack(actions)),
        rewards=torch.tensor(np.stack(rewards), dtype=torch.float32),
        terminations=torch.zeros(n, steps),
        truncations=torch.zeros(n, steps),
    )


def dot_position(images: torch.Tensor, dot: int) -> torch.Tensor:
    """Top-left corner (flattened index) of the brightest ``dot x dot`` square, ``[B]``."""
    brightness = images.float().sum(1, keepdim=True)
    return torch.nn.functional.avg_pool2d(brightness, dot, 1).flatten(1).argmax(1)
