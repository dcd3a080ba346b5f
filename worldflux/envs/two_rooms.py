"""``TwoRooms``: a point agent in two rooms joined by a door, seen from above (as the "two rooms"
task of PLDM, Sobal et al., 2025), for goal-reaching with world models planned in their latent
space.

The arena is the square ``[-1, 1]^2``. A wall along ``x = 0`` splits it into a left and a right
room; the agent passes only through the door, where ``|y| < door / 2``. An action ``a`` in
``[-1, 1]^2`` moves the agent by ``step_size * a``; a move that would cross the wall outside the
door stops in front of the wall (``wall_gap`` from it, the drawn wall's half-width at 64 x 64),
and the outer walls clip the position.

Observations: ``"pixels"`` (default) a grey top-down image ``uint8 [size, size, 1]`` (walls
dark, floor light, the agent a mid-grey disc; 4 KB a frame at 64 x 64); ``"state"`` the position
``float32 [2]``. The goal is not
drawn: :meth:`TwoRoomsEnv.goal_observation` gives the observation of the agent standing at the
goal, which is how goal-conditioned planners receive it.

Reward (``task="goal"``): ``-||position - goal||`` every step. An episode terminates when the
agent is within ``goal_radius`` of the goal with no wall between them (``info["success"]``); the
registered ids truncate it after 100 steps. ``task="explore"`` (for collecting goal-free data): reward 0, never terminates.
``reset(options={"start": (x, y), "goal": (x, y)})`` fixes either; otherwise both are drawn
uniformly over the floor outside the wall's band (the start and goal rooms at random).
"""

from __future__ import annotations

from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ..core.errors import ConfigError

Observation = Literal["pixels", "state"]
Task = Literal["goal", "explore"]

FLOOR, WALL, AGENT = 230, 40, 120  # grey levels of the observation
GOAL_RGB = np.array([40, 170, 60], np.uint8)  # the goal's colour in render()


class TwoRoomsEnv(gym.Env[np.ndarray, np.ndarray]):
    """Two rooms and a door (see the module docstring).

    Args:
        observation: ``"pixels"`` (``uint8 [size, size, 1]``) or ``"state"`` (``float32 [2]``).
        task: ``"goal"`` (reach the goal) or ``"explore"`` (no reward, no termination).
        size: image side in pixels (>= 16).
        step_size: the largest move per step along each axis (in arena units, the arena is 2 wide).
        door: the door's width (0 < door < 2).
        goal_radius: success distance.
        wall_gap: how far from the wall a blocked move stops.
        render_mode: ``"rgb_array"`` or None; ``render()`` returns the top-down image in RGB
            ``uint8 [size, size, 3]`` with the goal marked in green.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}  # noqa: RUF012 (gymnasium API)

    def __init__(
        self,
        observation: Observation = "pixels",
        *,
        task: Task = "goal",
        size: int = 64,
        step_size: float = 0.1,
        door: float = 0.4,
        goal_radius: float = 0.1,
        wall_gap: float = 0.05,
        render_mode: str | None = None,
    ) -> None:
        if observation not in ("pixels", "state"):
            raise ConfigError(
                f"TwoRoomsEnv.observation: expected 'pixels' or 'state', got {observation!r}."
            )
        if task not in ("goal", "explore"):
            raise ConfigError(f"TwoRoomsEnv.task: expected 'goal' or 'explore', got {task!r}.")
        if not isinstance(size, int) or size < 16:
            raise ConfigError(f"TwoRoomsEnv.size: expected an int >= 16, got {size!r}.")
        for name, value, low, high in (
            ("step_size", step_size, 0.0, 1.0),
            ("door", door, 0.0, 2.0),
            ("goal_radius", goal_radius, 0.0, 1.0),
            ("wall_gap", wall_gap, 0.0, 0.1),
        ):
            if not isinstance(value, int | float) or not low < float(value) < high:
                raise ConfigError(
                    f"TwoRoomsEnv.{name}: expected a number in ({low}, {high}), got {value!r}."
                )
        if render_mode not in (None, "rgb_array"):
            raise ConfigError(
                f"TwoRoomsEnv.render_mode: expected 'rgb_array' or None, got {render_mode!r}."
            )
        self.observation_kind: Observation = observation
        self.task: Task = task
        self.size = size
        self.step_size = float(step_size)
        self.door = float(door)
        self.goal_radius = float(goal_radius)
        self.wall_gap = float(wall_gap)
        self.render_mode = render_mode
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        if observation == "pixels":
            self.observation_space: spaces.Box = spaces.Box(0, 255, (size, size, 1), np.uint8)
        else:
            self.observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self._background = self._draw_background()
        self._position = np.zeros(2, np.float64)
        self._goal = np.zeros(2, np.float64)

    # -- geometry -----------------------------------------------------------------------------
    def blocked(self, a: np.ndarray, b: np.ndarray) -> bool:
        """Whether the wall lies on the segment from ``a`` to ``b`` (both ``[2]``)."""
        x0, x1 = a[0], b[0]
        if (x0 < 0.0) == (x1 < 0.0) or x0 == x1:  # does not cross x = 0
            return False
        y_cross = a[1] + (b[1] - a[1]) * (-x0) / (x1 - x0)
        return bool(abs(y_cross) >= self.door / 2)

    def move(self, position: np.ndarray, action: np.ndarray) -> np.ndarray:
        """The position after ``action`` from ``position`` (both ``[2]``), walls applied."""
        target = np.clip(position + self.step_size * np.clip(action, -1.0, 1.0), -1.0, 1.0)
        if self.blocked(position, target):  # stop in front of the wall
            target = target.copy()
            target[0] = -self.wall_gap if position[0] < 0.0 else self.wall_gap
        return target

    def _sample_position(self) -> np.ndarray:
        """Uniform over the floor outside the wall's band (``|x| > 2 * wall_gap``)."""
        while True:
            point = self.np_random.uniform(-0.95, 0.95, size=2)
            if abs(point[0]) > 2 * self.wall_gap:
                return point

    # -- pictures -----------------------------------------------------------------------------
    def _pixel(self, coordinate: np.ndarray) -> np.ndarray:
        """Arena coordinates ``[..., 2]`` -> pixel centres (column, row), y pointing up."""
        scale = (self.size - 1) / 2
        return np.stack(
            [(coordinate[..., 0] + 1) * scale, (1 - coordinate[..., 1]) * scale], axis=-1
        )

    def _draw_background(self) -> np.ndarray:
        image = np.full((self.size, self.size, 1), FLOOR, np.uint8)
        image[[0, -1], :] = WALL
        image[:, [0, -1]] = WALL
        centres = (np.arange(self.size) / ((self.size - 1) / 2)) - 1  # x of each column
        wall_cols = np.abs(centres) <= 1.5 / self.size * 2
        rows_y = 1 - np.arange(self.size) / ((self.size - 1) / 2)  # y of each row
        closed = np.abs(rows_y) >= self.door / 2
        image[np.ix_(closed, wall_cols)] = WALL
        return image

    def _draw(self, position: np.ndarray, colour: int | np.ndarray, image: np.ndarray) -> None:
        col, row = self._pixel(position)
        radius = max(1.5, self.size / 32)
        rows, cols = np.ogrid[: self.size, : self.size]
        image[(rows - row) ** 2 + (cols - col) ** 2 <= radius**2] = colour

    def observe(self, position: np.ndarray) -> np.ndarray:
        """The observation of the agent at ``position`` ``[2]``."""
        if self.observation_kind == "state":
            return np.asarray(position, np.float32).copy()
        image = self._background.copy()
        self._draw(position, AGENT, image)
        return image

    def goal_observation(self) -> np.ndarray:
        """The observation of the agent standing at the current goal."""
        return self.observe(self._goal)

    @property
    def position(self) -> np.ndarray:
        return self._position.copy()

    @property
    def goal(self) -> np.ndarray:
        return self._goal.copy()

    # -- gymnasium API --------------------------------------------------------------------------
    def _point(self, options: dict[str, Any], key: str) -> np.ndarray:
        if key not in options:
            return self._sample_position()
        point = np.asarray(options[key], np.float64)
        if point.shape != (2,) or not np.all(np.abs(point) <= 1.0):
            raise ConfigError(
                f"TwoRoomsEnv.reset: expected options[{key!r}] as (x, y) within [-1, 1], got "
                f"{options[key]!r}."
            )
        return point

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        options = options or {}
        self._position = self._point(options, "start")
        self._goal = self._point(options, "goal")
        return self.observe(self._position), self._info()

    def _info(self) -> dict[str, Any]:
        distance = float(np.linalg.norm(self._position - self._goal))
        return {
            "position": self._position.astype(np.float32),
            "goal": self._goal.astype(np.float32),
            "distance": distance,
            "success": distance < self.goal_radius and not self.blocked(self._position, self._goal),
        }

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        array = np.asarray(action, np.float64)
        if array.shape != (2,) or not np.all(np.isfinite(array)):
            raise ValueError(f"TwoRoomsEnv.step: expected 2 finite floats, got {action!r}.")
        self._position = self.move(self._position, array)
        info = self._info()
        if self.task == "explore":
            return self.observe(self._position), 0.0, False, False, info
        return (
            self.observe(self._position),
            -info["distance"],
            bool(info["success"]),
            False,
            info,
        )

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        image = np.repeat(self._background, 3, axis=2)
        self._draw(self._goal, GOAL_RGB, image)
        self._draw(self._position, np.full(3, AGENT, np.uint8), image)
        return image
