"""Real environments that WorldFlux provides for its own benchmarks, registered with gymnasium
by ``import worldflux``:

* ``WorldFlux/TwoRooms-v0``: :class:`~worldflux.envs.two_rooms.TwoRoomsEnv` with top-down grey
  images ``uint8 [64, 64, 1]``; ``WorldFlux/TwoRooms-State-v0``: the same with the position
  ``float32 [2]`` as observation; ``WorldFlux/TwoRooms-Explore-v0``: images, no goal (reward 0,
  no termination), for collecting goal-free data (``WorldFlux/TwoRooms-State-Explore-v0`` with
  positions). All truncate episodes after 100 steps.
* ``WorldFlux/Breakout64-v0``, ``WorldFlux/Pong64-v0``: :class:`~worldflux.envs.atari.AtariEnv`,
  the ALE games as RGB frames ``uint8 [64, 64, 3]`` with a frame skip of 4 and sticky actions
  (the optional ``ale-py``); truncated after 27,000 steps.

(The dream environments, ``WorldFlux/<Family>-<Env>-v0``, come from the env cards instead.)
"""

from __future__ import annotations

import gymnasium as gym

#: id -> (entry point, keyword arguments, max episode steps)
ENVS: dict[str, tuple[str, dict[str, object], int]] = {
    "WorldFlux/TwoRooms-v0": ("worldflux.envs.two_rooms:TwoRoomsEnv", {}, 100),
    "WorldFlux/TwoRooms-State-v0": (
        "worldflux.envs.two_rooms:TwoRoomsEnv",
        {"observation": "state"},
        100,
    ),
    "WorldFlux/TwoRooms-Explore-v0": (
        "worldflux.envs.two_rooms:TwoRoomsEnv",
        {"task": "explore"},
        100,
    ),
    "WorldFlux/TwoRooms-State-Explore-v0": (
        "worldflux.envs.two_rooms:TwoRoomsEnv",
        {"observation": "state", "task": "explore"},
        100,
    ),
    **{
        f"WorldFlux/{game}64-v0": ("worldflux.envs.atari:AtariEnv", {"game": game}, 27_000)
        for game in ("Breakout", "Pong")
    },
}


def register_envs() -> list[str]:
    """Register :data:`ENVS` with gymnasium (idempotent); returns the ids."""
    for env_id, (entry_point, kwargs, steps) in ENVS.items():
        if env_id not in gym.registry:
            gym.register(
                id=env_id, entry_point=entry_point, kwargs=dict(kwargs), max_episode_steps=steps
            )
    return list(ENVS)
