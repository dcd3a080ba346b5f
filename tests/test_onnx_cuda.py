"""The CUDA path of the ONNX backend (skipped where ONNX Runtime has no CUDA execution provider,
as on CI): per-step parity with float32 torch on the CPU, the state kept on the device between
steps (IO binding), resets through ``replace.onnx``, and 100-step trajectories that match the CPU
backend."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import rollouts

import worldflux  # noqa: F401  (registers the cards)
from worldflux.dream import load_simulator, make_dream_env
from worldflux.dream.cards import load_cards
from worldflux.dream.noise import counter_noise

pytestmark = pytest.mark.skipif(
    "CUDAExecutionProvider" not in ort.get_available_providers(),
    reason="onnxruntime has no CUDA execution provider here",
)
CARDS = load_cards()
SHIPPED = [name for name in sorted(CARDS) if (CARDS[name].artifact_dir / "step.onnx").is_file()]


@pytest.mark.parametrize("n", [1, 64, 4096])
@pytest.mark.parametrize("name", SHIPPED)
def test_cuda_step_matches_cpu_torch_and_keeps_the_state_on_the_device(name: str, n: int) -> None:
    sim = load_simulator(name)
    cpu = sim.make_backend("torch")
    gpu = sim.make_backend("onnx", device="cuda")
    assert gpu.providers[0] == "CUDAExecutionProvider"  # type: ignore[attr-defined]
    rng = np.random.default_rng(n)
    obs = sim.reset_states.any[rng.integers(len(sim.reset_states.any), size=n)]
    action = rng.uniform(-1, 1, (n, 6)).astype(np.float32)
    keys = np.arange(n, dtype=np.uint64) + np.uint64(99)
    noise, _ = counter_noise(cpu.noise_spec, keys, np.zeros(n, np.uint64))
    t_state, t = cpu.step(cpu.encode(obs), action, noise)
    g_state, g = gpu.step(gpu.encode(obs), action, noise)
    for key, value in g_state.items():
        assert value.device_name().lower() == "cuda", key  # IO binding: never copied out
    for field in ("obs", "reward", "continue_prob", "uncertainty"):
        a, b = getattr(t, field), getattr(g, field)
        if a is None:
            assert b is None
            continue
        np.testing.assert_allclose(b, a, atol=1e-4, rtol=0, err_msg=field)
    if "stoch" in g_state:  # identical categorical samples for identical noise
        np.testing.assert_array_equal(g_state["stoch"].numpy(), t_state["stoch"].cpu().numpy())
    index = np.array([0]) if n == 1 else np.array([n - 1, 0])
    new = gpu.encode(obs[: len(index)])
    replaced = gpu.replace(g_state, index, new)
    for key in g_state:
        assert replaced[key].device_name().lower() == "cuda"
        np.testing.assert_array_equal(replaced[key].numpy()[index], new[key].numpy())


@pytest.mark.parametrize("name", SHIPPED)
def test_cuda_trajectories_match_the_cpu_backend(name: str) -> None:
    runs = {
        device: rollouts.record(
            make_dream_env(name, num_envs=256, backend="onnx", device=device, horizon=40), seed=3
        )
        for device in ("cpu", "cuda")
    }
    np.testing.assert_array_equal(runs["cuda"][1], runs["cpu"][1])
    np.testing.assert_allclose(runs["cuda"][0], runs["cpu"][0], atol=1e-2, rtol=0)
