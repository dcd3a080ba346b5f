"""Frames of dream environments: MuJoCo for MuJoCo-sourced models (the decoded state written into
the real env), the image itself for image observations, a bar plot otherwise; the side-by-side
dream video."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

import worldflux as wf
from worldflux.dream import LearnedSimulator, ResetStates, make_dream_env
from worldflux.dream.render import BarFrames, MujocoFrames
from worldflux.dream.video import dream_video


@pytest.fixture(scope="module")
def walker_sim() -> LearnedSimulator:
    real = gym.make("Walker2d-v5")
    starts = np.stack([real.reset(seed=s)[0] for s in range(8)]).astype(np.float32)
    torch.manual_seed(0)
    model = wf.create_world_model("dreamerv3:tiny", obs_shape=(17,), action_dim=6)
    return LearnedSimulator(
        model=model,
        observation_space=real.observation_space,
        action_space=real.action_space,
        reset_states=ResetStates(start=starts, any=starts),
        defaults={"horizon": 50},
        source_env="Walker2d-v5",
    )


def test_mujoco_frames_show_the_dream_state(walker_sim: LearnedSimulator) -> None:
    env = make_dream_env(walker_sim, render_mode="rgb_array")
    assert isinstance(env.unwrapped.frames, MujocoFrames)
    obs, _ = env.reset(seed=0)
    first = env.render()
    assert first.shape == (320, 320, 3) and first.dtype == np.uint8 and first.std() > 5
    # the same observation written into the real env renders the same picture
    real = gym.make("Walker2d-v5", render_mode="rgb_array", width=320, height=320)
    real.reset(seed=0)
    sim = real.unwrapped
    sim.set_state(np.concatenate([[0.0], obs[:8]]), obs[8:])
    np.testing.assert_array_equal(first, real.render())
    env.step(np.zeros(6))
    assert env.render().shape == (320, 320, 3)
    assert make_dream_env(walker_sim).render() is None  # no render_mode: no frames


def test_bar_frames_for_other_vector_envs(walker_sim: LearnedSimulator) -> None:
    sim = LearnedSimulator(**{**walker_sim.__dict__, "source_env": None})
    env = make_dream_env(sim, render_mode="rgb_array")
    assert isinstance(env.unwrapped.frames, BarFrames)
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (256, 256, 3) and (frame != 255).any()


def test_mujoco_envs_with_other_observations_fall_back_to_bars() -> None:
    """InvertedDoublePendulum's 9 observations are not qpos[1:] + qvel: a bar plot, no error."""
    from worldflux.dream.render import make_frames

    real = gym.make("InvertedDoublePendulum-v5")
    starts = np.stack([real.reset(seed=s)[0] for s in range(4)])
    frames = make_frames("InvertedDoublePendulum-v5", real.observation_space, starts)
    assert isinstance(frames, BarFrames)
    frames.observe(starts[0], reset=True)
    assert frames.frame().shape == (256, 256, 3)


def test_image_observations_render_themselves() -> None:
    torch.manual_seed(0)
    pool = np.random.default_rng(0).integers(0, 256, (4, 3, 16, 16), dtype=np.uint8)
    sim = LearnedSimulator(
        model=wf.create_world_model("dreamerv3:tiny", obs_shape=(3, 16, 16), action_dim=4),
        observation_space=spaces.Box(0, 255, (16, 16, 3), np.uint8),
        action_space=spaces.Discrete(4),
        reset_states=ResetStates(start=pool, any=pool),
    )
    env = make_dream_env(sim, render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (256, 256, 3)
    np.testing.assert_array_equal(frame[::16, ::16], obs)


def test_dream_video_saves_a_side_by_side_gif(walker_sim: LearnedSimulator, tmp_path: Path) -> None:
    from PIL import Image

    art = walker_sim.save_artifact(tmp_path / "art")
    result = dream_video(art, tmp_path / "clip.gif", steps=5, seed=0)
    assert result["steps"] >= 1
    with Image.open(tmp_path / "clip.gif") as gif:
        assert gif.size == (640, 320) and gif.n_frames == result["steps"] + 1


def test_dream_video_cli_flags(
    walker_sim: LearnedSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from worldflux.cli import main

    art = walker_sim.save_artifact(tmp_path / "art")
    out = tmp_path / "v.gif"
    args = ["dream-video", str(art), "--out", str(out), "--steps", "2", "--seed", "3"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["path"] == str(out) and result["steps"] <= 2 and out.is_file()
    assert main([*args, "--policy", str(tmp_path / "missing.zip")]) == 2
    assert "missing.zip does not exist" in capsys.readouterr().err
