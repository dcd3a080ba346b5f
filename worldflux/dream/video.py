"""`worldflux dream-video`: the real environment and its dream side by side, driven by the same
actions, saved as an animated GIF (left: real, right: dream).

The dream starts from the real environment's first observation; the actions come from a policy
that sees the *real* observations (an SB3 model file, or uniform random actions), so the clip shows
how far the dream drifts open-loop under the real behaviour. Image sources (Atari frames) show
the real and the dreamed observation at the same scale; MuJoCo sources render both bodies.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from ..core.errors import ConfigError
from ..core.serialization import ordinary_mode
from ..data.collect import RandomPolicy, SB3Policy
from .make import load_simulator, make_dream_env
from .render import FRAME_SIZE, ImageFrames


def save_gif(frames: list[np.ndarray], path: Path, fps: int = 30) -> None:
    """Write ``frames`` (``[H, W, 3]`` uint8) as an animated GIF, atomically."""
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".gif", dir=path.parent)
    os.close(fd)
    try:
        images[0].save(
            tmp, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0
        )
        os.chmod(tmp, ordinary_mode(0o666))  # mkstemp makes it private; a clip is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def dream_video(
    source: str | Path,
    out: str | Path,
    *,
    steps: int = 300,
    seed: int = 0,
    policy: str | Path | None = None,
) -> dict[str, Any]:
    """Record up to ``steps`` steps (until the real or the dream episode ends) to ``out``."""
    if steps < 1:
        raise ConfigError(f"steps: expected >= 1, got {steps}.")
    if policy is not None and not Path(policy).is_file():
        raise ConfigError(f"--policy: expected an SB3 model zip, but {policy} does not exist.")
    sim = load_simulator(source)
    if sim.source_env is None:
        raise ConfigError(f"{source}: the simulator does not name its source environment.")
    # image sources (e.g. Atari frames): both sides show the observation, at the same scale
    image = len(sim.observation_space.shape or ()) == 3
    if image:
        real = gym.make(sim.source_env)
        real_frames = ImageFrames()
    else:
        real = gym.make(
            sim.source_env, render_mode="rgb_array", width=FRAME_SIZE, height=FRAME_SIZE
        )

    def real_frame(obs: Any) -> np.ndarray:
        if not image:
            return np.asarray(real.render())
        real_frames.observe(obs, False)
        return real_frames.frame()

    dream = make_dream_env(sim, horizon=None, render_mode="rgb_array")
    act = (
        SB3Policy.from_file(policy, real)
        if policy is not None
        else RandomPolicy(real.action_space, seed)
    )
    obs, _ = real.reset(seed=seed)
    dream.reset(seed=seed, options={"obs": obs})
    frames = [np.concatenate([real_frame(obs), dream.render()], axis=1)]
    returns = {"real": 0.0, "dream": 0.0}
    for _ in range(steps):
        action = act(np.asarray(obs)[None])[0]
        obs, reward, term, trunc, _ = real.step(action)
        _, dream_reward, dream_term, _, _ = dream.step(action)
        returns["real"] += float(reward)
        returns["dream"] += float(dream_reward)
        frames.append(np.concatenate([real_frame(obs), dream.render()], axis=1))
        if term or trunc or dream_term:
            break
    path = Path(out)
    save_gif(frames, path)
    return {"path": str(path), "steps": len(frames) - 1, "returns": returns}
