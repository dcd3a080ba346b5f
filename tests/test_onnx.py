"""ONNX export and the ONNX Runtime backend: per-step and trajectory parity with torch, the
torch-free runtime, backend choice and device checks, export errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import rollouts
import torch
from gymnasium import spaces

import worldflux as wf
from worldflux.core.errors import ConfigError, SerializationError
from worldflux.core.state import State
from worldflux.dream import LearnedSimulator, ResetStates, load_simulator, make_dream_env
from worldflux.dream.backend import DreamBackend, StepResult
from worldflux.dream.cards import load_cards
from worldflux.dream.noise import counter_noise
from worldflux.dream.onnx_backend import OnnxBackend, OnnxDeviceError, OnnxLayout
from worldflux.export import ExportError, export_artifact, export_graphs
from worldflux.models.error_heads import ErrorHeads

CARDS = load_cards()
SHIPPED = [name for name in sorted(CARDS) if (CARDS[name].artifact_dir / "step.onnx").is_file()]
#: per-step agreement (absolute, float32 graphs vs eager torch); image observations are compared
#: as fractions of the pixel range (255 would leave float32 only ~3e-5 of resolution per unit)
STEP_ATOL = 1e-4


def random_model_sim(
    spec: str, obs_shape: tuple[int, ...], action: spaces.Space, **overrides: Any
) -> LearnedSimulator:
    """A simulator of a randomly initialised model; its error heads (if any) count as fitted."""
    torch.manual_seed(0)
    dim = int(action.n) if isinstance(action, spaces.Discrete) else int(action.shape[0])
    model = wf.create_world_model(spec, obs_shape=obs_shape, action_dim=dim, **overrides)
    for module in model.modules():
        if isinstance(module, ErrorHeads):
            module.fitted.fill_(True)
            module.is_fitted = True
    rng = np.random.default_rng(0)
    if len(obs_shape) == 3:
        pool = rng.integers(0, 256, size=(70, *obs_shape), dtype=np.uint8)
        space = spaces.Box(0, 255, (*obs_shape[1:], obs_shape[0]), np.uint8)
    else:
        pool = rng.normal(size=(70, *obs_shape)).astype(np.float32)
        space = spaces.Box(-np.inf, np.inf, obs_shape, np.float64)
    return LearnedSimulator(
        model=model,
        observation_space=space,
        action_space=action,
        reset_states=ResetStates(start=pool, any=pool),
        defaults={"horizon": 30},
    )


def one_step(
    backend: DreamBackend, obs: np.ndarray, action: np.ndarray
) -> tuple[dict[str, np.ndarray], StepResult]:
    """One step from ``obs`` with fixed noise; the next state as numpy arrays and the result."""
    n = len(obs)
    keys = np.arange(n, dtype=np.uint64) * np.uint64(7919) + np.uint64(3)
    noise, _ = counter_noise(backend.noise_spec, keys, np.full(n, 5, np.uint64))
    state, result = backend.step(backend.encode(obs), action, noise)
    if isinstance(state, State):  # torch backend
        return {k: v.cpu().numpy() for k, v in state.tensors.items()}, result
    return dict(state), result


def assert_step_parity(sim: LearnedSimulator, n: int, discrete_keys: tuple[str, ...]) -> None:
    torch_b = sim.make_backend("torch")
    onnx_b = sim.make_backend("onnx")
    rng = np.random.default_rng(n)
    pool = sim.reset_states.any
    obs = pool[rng.integers(len(pool), size=n)]
    action = rng.uniform(-1, 1, (n, torch_b.action_dim)).astype(np.float32)
    t_state, t = one_step(torch_b, obs, action)
    o_state, o = one_step(onnx_b, obs, action)
    for name in ("obs", "reward", "continue_prob", "uncertainty"):
        a, b = getattr(t, name), getattr(o, name)
        if a is None:
            assert b is None
            continue
        assert a.shape == b.shape, name
        scale = 255.0 if name == "obs" and obs.dtype == np.uint8 else 1.0
        np.testing.assert_allclose(b / scale, a / scale, atol=STEP_ATOL, rtol=0, err_msg=name)
    for key in discrete_keys:  # samples from the same noise: identical, not merely close
        np.testing.assert_array_equal(o_state[key], t_state[key])


@pytest.mark.parametrize("n", [1, 64])
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_graphs_match_torch_per_step(name: str, n: int) -> None:
    sim = load_simulator(name)
    discrete = ("stoch",) if sim.torch_model().model_type in ("dreamerv3", "planet") else ()
    assert_step_parity(sim, n, discrete)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_trajectories_agree_over_100_steps(name: str) -> None:
    """64 envs, 100 random-action steps with autoresets: the same seeds give the same episodes
    on both backends, observations within 1e-2 (float32 rounding compounds over the steps).

    A categorical draw whose uniform number lies within float rounding of a class boundary can
    pick neighbouring classes on the two backends, and that env's trajectory then parts (one
    env of 64 at step 68 with ONNX Runtime 1.32 and torch 2.13); at most 2 envs may do so."""
    runs = {
        backend: rollouts.record(make_dream_env(name, num_envs=64, backend=backend), seed=11)
        for backend in ("torch", "onnx")
    }
    gap = np.abs(runs["onnx"][0] - runs["torch"][0])
    per_env = gap.reshape(gap.shape[0], 64, -1).max(axis=(0, 2))
    agree = per_env <= 1e-2
    assert agree.sum() >= 62, np.sort(per_env)[-4:]
    np.testing.assert_array_equal(runs["onnx"][1][:, agree], runs["torch"][1][:, agree])


@pytest.mark.parametrize(
    "spec, obs_shape, action, overrides",
    [
        ("dreamerv3:tiny", (5,), spaces.Box(-1, 1, (2,), np.float32), {}),
        ("dreamerv3:tiny", (3, 16, 16), spaces.Discrete(4), {}),
        ("planet", (5,), spaces.Box(-1, 1, (2,), np.float32), {}),
        ("ensemble:tiny", (5,), spaces.Box(-1, 1, (2,), np.float32), {}),
        ("ensemble:tiny", (5,), spaces.Box(-1, 1, (2,), np.float32), {"error_heads": 2}),
        ("tdmpc2:tiny", (5,), spaces.Box(-1, 1, (2,), np.float32), {}),
        ("jepa:tiny", (5,), spaces.Box(-1, 1, (2,), np.float32), {}),
    ],
    ids=[
        "dreamer-vector",
        "dreamer-image",
        "planet",
        "ensemble",
        "ensemble-error-heads",
        "tdmpc2",
        "jepa",
    ],
)
def test_families_export_and_match_torch(
    spec: str, obs_shape: tuple[int, ...], action: spaces.Space, overrides: dict[str, Any]
) -> None:
    sim = random_model_sim(spec, obs_shape, action, **overrides)
    graphs = export_graphs(sim.torch_model(), sim.reset_states.start)
    assert OnnxLayout.from_json(json.loads(json.dumps(graphs.layout.to_json()))) == graphs.layout
    assert graphs.layout.uncertainty  # every built-in family has one
    assert graphs.layout.decoded == sim.torch_model().decodes_observations
    sim.onnx = graphs.layout
    sim.onnx_graphs = lambda: graphs  # type: ignore[method-assign]
    discrete = ("stoch",) if spec.startswith("dreamer") else ()
    for n in (1, 64):
        assert_step_parity(sim, n, discrete)


def test_replace_graph_replaces_rows() -> None:
    """The CUDA path swaps reset rows with replace.onnx; it must do what numpy does."""
    sim = random_model_sim("dreamerv3:tiny", (5,), spaces.Box(-1, 1, (2,), np.float32))
    graphs = export_graphs(sim.torch_model(), sim.reset_states.start)
    session = ort.InferenceSession(graphs.replace, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    state = {k: rng.normal(size=(6, *s)).astype(np.float32) for k, s in graphs.layout.state.items()}
    new = {k: rng.normal(size=(2, *s)).astype(np.float32) for k, s in graphs.layout.state.items()}
    index = np.array([4, 1])
    feed = {f"state.{k}": v for k, v in state.items()}
    feed.update({f"new.{k}": v for k, v in new.items()})
    feed["index"] = index
    out = dict(zip(graphs.layout.state, session.run(None, feed), strict=True))
    cpu = OnnxBackend(graphs).replace(state, index, new)
    for k in graphs.layout.state:
        np.testing.assert_array_equal(out[k], cpu[k])
        np.testing.assert_array_equal(cpu[k][index], new[k])


def test_export_command_writes_a_self_contained_artifact(tmp_path: Path) -> None:
    sim = random_model_sim("ensemble:tiny", (5,), spaces.Box(-1, 1, (2,), np.float32))
    first = sim.save_artifact(tmp_path / "plain", onnx=False)
    assert not (first / "step.onnx").exists()
    assert load_simulator(first).onnx is None
    result = export_artifact(first, tmp_path / "exported")
    assert {"encode.onnx", "step.onnx", "replace.onnx", "manifest.json"} <= set(result["files"])
    loaded = load_simulator(tmp_path / "exported")
    assert loaded.onnx is not None and loaded.onnx.uncertainty
    env = make_dream_env(loaded, num_envs=4)
    assert env.core.backend_name == "onnx"
    env.reset(seed=0)
    env.step(np.zeros((4, 2), np.float32))


def test_auto_picks_a_backend_and_settings_are_checked() -> None:
    sim = random_model_sim("dreamerv3:tiny", (5,), spaces.Box(-1, 1, (2,), np.float32))
    venv = make_dream_env(sim, num_envs=8, backend="auto")
    assert venv.core.backend_name in ("torch", "onnx")
    venv.reset(seed=0)
    venv.step(np.zeros((8, 2), np.float32))
    with pytest.raises(ConfigError, match="bf16"):
        make_dream_env(sim, backend="onnx", bf16=True)
    with pytest.raises(ConfigError, match="threads"):
        make_dream_env(sim, backend="torch", threads=2)
    with pytest.raises(ConfigError, match="threads"):
        make_dream_env(sim, backend="onnx", threads=0)
    with pytest.raises(ConfigError, match="device"):
        make_dream_env(sim, backend="onnx", device="tpu")
    with pytest.raises(ConfigError, match="backend"):
        make_dream_env(sim, backend="jax")  # type: ignore[arg-type]
    env = make_dream_env(sim, backend="onnx", threads=1)
    env.reset(seed=0)
    env.step(np.zeros(2, np.float32))


@pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(), reason="CUDA is available here"
)
def test_cuda_fallback_is_never_silent() -> None:
    sim = random_model_sim("dreamerv3:tiny", (5,), spaces.Box(-1, 1, (2,), np.float32))
    with pytest.raises(OnnxDeviceError, match="CUDA|gpu"):
        make_dream_env(sim, backend="onnx", device="cuda")
    with pytest.warns(RuntimeWarning, match="Running on the CPU"):
        env = make_dream_env(sim, backend="onnx", device="cuda", on_fallback="warn")
    env.reset(seed=0)
    env.step(np.zeros(2, np.float32))


def test_untraceable_model_gets_a_clear_export_error() -> None:
    torch.manual_seed(0)
    model = wf.create_world_model("ensemble:tiny", obs_shape=(5,), action_dim=2, partitioned=True)
    with pytest.raises(ExportError, match=r"ensemble\.step: torch\.onnx could not export"):
        export_graphs(model, np.zeros((4, 5), np.float32))
    with pytest.raises(ExportError, match="example_obs"):
        export_graphs(model, np.zeros((0, 5), np.float32))


@pytest.mark.skipif(not SHIPPED, reason="no shipped artifact with ONNX graphs")
def test_runtime_without_torch() -> None:
    """A shipped env runs where ``import torch`` fails: numpy + onnxruntime + gymnasium."""
    card = CARDS[SHIPPED[0]]
    script = textwrap.dedent(
        f"""
        import sys

        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")

        sys.meta_path.insert(0, NoTorch())
        import gymnasium as gym
        import numpy as np
        from gymnasium.utils.env_checker import check_env

        import worldflux
        from worldflux.core.errors import WorldFluxError

        env = gym.make({card.id!r})
        assert env.unwrapped.core.backend_name == "onnx"
        check_env(env.unwrapped, skip_render_check=True)
        venv = gym.make_vec({card.id!r}, num_envs=8)
        venv.reset(seed=0)
        for _ in range(20):
            venv.step(venv.action_space.sample())
        for attempt in (lambda: worldflux.create_world_model,
                        lambda: gym.make({card.id!r}, backend="torch")):
            try:
                attempt()
            except WorldFluxError as exc:
                assert "needs PyTorch" in str(exc), exc
            else:
                raise AssertionError("expected an error saying that torch is missing")
        assert not hasattr(worldflux, "State")
        from worldflux.cli import main

        assert main(["info"]) == 0  # the runtime side, with a warning about torch
        from worldflux import *  # noqa: F403  (only what exists without torch)
        assert "torch" not in sys.modules
        print("ok")
        """
    )
    with warnings.catch_warnings():
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
        )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


def test_default_backend_and_folder_guards(tmp_path: Path) -> None:
    sim = random_model_sim("ensemble:tiny", (5,), spaces.Box(-1, 1, (2,), np.float32))
    art = sim.save_artifact(tmp_path / "art")
    loaded = load_simulator(art)
    assert make_dream_env(loaded).core.backend_name == "onnx"
    assert make_dream_env(loaded, bf16=True).core.backend_name == "torch"  # onnx has no bf16
    with pytest.raises(ConfigError, match="bf16 needs backend='torch'"):
        make_dream_env(loaded, backend="auto", bf16=True)
    make_dream_env(loaded, halt=np.float32(0.5))  # numpy numbers are numbers
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("keep me")
    with pytest.raises(SerializationError, match="refusing to replace it"):
        export_artifact(art, foreign)
    assert (foreign / "todo.txt").read_text() == "keep me"
    assert export_artifact(art, art)["artifact"] == str(art)  # an artifact replaces itself
