"""Atari games as the pixel world models see them: ``ale-py``'s games (its wheel ships the ROMs)
with the evaluation protocol of Machado et al. (2018, "Revisiting the Arcade Learning
Environment"): a frame skip of 4 and sticky actions (each step repeats the previous action with
probability 0.25), no life-loss signal, the game's minimal action set as ``Discrete`` actions.

Observations are RGB frames ``uint8 [size, size, 3]`` (64 x 64 by default, 12 KB a frame),
area-averaged from the emulator's ``210 x 160`` screen. ``render()`` (``render_mode=
"rgb_array"``) returns the full screen of the last step. The registered ids
(``WorldFlux/Breakout64-v0``, ``WorldFlux/Pong64-v0``) truncate an episode after 27,000 steps
(108,000 frames, ALE's own limit).

Needs the optional ``ale-py`` (``pip install "worldflux[atari]"``); without it, making the env
raises :class:`~worldflux.core.errors.ConfigError` saying so.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ..core.errors import ConfigError

#: games with a registered ``WorldFlux/<Game>64-v0`` id
GAMES = ("Breakout", "Pong")
#: ALE's screen, rows x columns
SCREEN = (210, 160)


def area_weights(size_in: int, size_out: int) -> np.ndarray:
    """``[size_out, size_in]`` averaging weights: output pixel ``i`` is the mean of the input
    interval ``[i, i + 1) * size_in / size_out``, partial input pixels weighted by their
    overlap (area interpolation). Rows sum to 1."""
    if size_in < 1 or size_out < 1:
        raise ConfigError(f"area_weights: expected sizes >= 1, got {size_in} -> {size_out}.")
    scale = size_in / size_out
    edges = np.arange(size_out + 1) * scale  # output pixel i covers [edges[i], edges[i + 1])
    left = np.arange(size_in)[None, :]
    overlap = np.minimum(edges[1:, None], left + 1) - np.maximum(edges[:-1, None], left)
    return (np.clip(overlap, 0.0, None) / scale).astype(np.float32)


def area_taps(weights: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """``weights [out, in]`` as taps ``(input index [out], weight [out])``: output ``i`` is
    ``sum over taps of weight[i] * input[index[i]]`` (a few taps, the most input pixels that
    overlap one output pixel)."""
    nonzero = weights > 0
    first = nonzero.argmax(1)
    taps = int(nonzero.sum(1).max())
    rows = np.arange(len(weights))
    out = []
    for k in range(taps):
        idx = np.minimum(first + k, weights.shape[1] - 1)
        out.append((idx, np.where(first + k < weights.shape[1], weights[rows, idx], 0.0)))
    return out


def _import_ale() -> Any:
    try:
        import ale_py
    except ImportError:
        raise ConfigError(
            "the Atari envs need ale-py, which is not installed here: "
            "pip install 'worldflux[atari]' (its wheel ships the game ROMs)."
        ) from None
    gym.register_envs(ale_py)
    return ale_py


class AtariEnv(gym.Env[np.ndarray, np.int64]):
    """One ALE game with RGB observations ``uint8 [size, size, 3]`` (see the module docstring).

    Args:
        game: ALE game name, e.g. ``"Breakout"`` or ``"Pong"``.
        size: side of the square observation in pixels (8-160).
        frameskip: emulator frames per step (each repeats the action).
        repeat_action_probability: sticky actions (Machado et al., 2018: 0.25).
        render_mode: ``"rgb_array"`` or None.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}  # noqa: RUF012 (gymnasium API)

    def __init__(
        self,
        game: str = "Breakout",
        *,
        size: int = 64,
        frameskip: int = 4,
        repeat_action_probability: float = 0.25,
        render_mode: str | None = None,
    ) -> None:
        if not isinstance(size, int) or not 8 <= size <= min(SCREEN):
            raise ConfigError(f"AtariEnv.size: expected an int in [8, 160], got {size!r}.")
        if not isinstance(frameskip, int) or frameskip < 1:
            raise ConfigError(f"AtariEnv.frameskip: expected an int >= 1, got {frameskip!r}.")
        if not 0.0 <= repeat_action_probability < 1.0:
            raise ConfigError(
                "AtariEnv.repeat_action_probability: expected a probability in [0, 1), got "
                f"{repeat_action_probability!r}."
            )
        if render_mode not in (None, "rgb_array"):
            raise ConfigError(
                f"AtariEnv.render_mode: expected 'rgb_array' or None, got {render_mode!r}."
            )
        _import_ale()
        env_id = f"ALE/{game}-v5"
        if env_id not in gym.registry:
            raise ConfigError(f"AtariEnv.game: ale-py has no game {game!r} ({env_id}).")
        self.game = game
        self.render_mode = render_mode
        self._ale = gym.make(
            env_id,
            obs_type="rgb",
            frameskip=frameskip,
            repeat_action_probability=repeat_action_probability,
            full_action_space=False,
            max_num_frames_per_episode=None,
        )
        self._row_taps = area_taps(area_weights(SCREEN[0], size))
        self._col_taps = area_taps(area_weights(SCREEN[1], size))
        self.observation_space = spaces.Box(0, 255, (size, size, 3), np.uint8)
        self.action_space = self._ale.action_space
        self._screen: np.ndarray | None = None

    def _frame(self, screen: np.ndarray) -> np.ndarray:
        """``uint8 [210, 160, 3] -> uint8 [size, size, 3]`` by area averaging (as a few weighted
        gathers per axis: small BLAS calls stall when other processes busy the cores)."""
        self._screen = screen
        if screen.shape[:2] != SCREEN:
            raise ConfigError(
                f"AtariEnv: expected a {SCREEN} screen from ALE, got {screen.shape[:2]}."
            )
        x = screen.astype(np.float32)
        rows = sum(w[:, None, None] * x[i] for i, w in self._row_taps)  # [size, 160, 3]
        out = sum(w[None, :, None] * rows[:, i] for i, w in self._col_taps)  # [size, size, 3]
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        screen, info = self._ale.reset(seed=seed, options=options)
        return self._frame(screen), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise ConfigError(
                f"AtariEnv.step: expected an action in {self.action_space}, got {action!r}."
            )
        screen, reward, terminated, truncated, info = self._ale.step(action)
        return self._frame(screen), float(reward), bool(terminated), bool(truncated), info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array" or self._screen is None:
            return None
        return self._screen.copy()

    def close(self) -> None:
        self._ale.close()
