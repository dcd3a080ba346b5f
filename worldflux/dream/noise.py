"""Counter-based noise: every random number of a dream step is a pure function of
``(episode key, step counter, position)``, computed for all environments at once.

A dream environment draws one 63-bit *episode key* from its own ``np_random`` at every reset;
the noise of step ``t`` is then ``hash(key, t, j)`` for position ``j`` of the flattened noise
vector. Consequences:

* seeds reproduce trajectories exactly, whatever the batch size: ``N`` single environments and one
  vector environment of ``N`` give identical trajectories for the same seeds;
* the hot path has no per-environment Python: one vectorised hash for the whole batch;
* the noise can be handed to any backend (torch, ONNX Runtime) as an explicit input.

The hash is SplitMix64's finaliser (Steele et al., 2014) applied to a key/counter/position mix;
uniforms take the top 24 bits (exact in float32), normals use the Box-Muller transform.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..core.noise import NoiseSpec

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_STEP = np.uint64(0xD1B54A32D192ED03)


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def counter_uniform(keys: np.ndarray, counters: np.ndarray, size: int) -> np.ndarray:
    """Uniforms on ``[0, 1)``, float32 ``[N, size]``, for keys and counters ``[N]`` (uint64)."""
    keys = np.asarray(keys, dtype=np.uint64)
    counters = np.asarray(counters, dtype=np.uint64)
    position = np.arange(size, dtype=np.uint64)[None, :] + np.uint64(1)
    with np.errstate(over="ignore"):
        base = _mix(keys * _GOLDEN + counters * _STEP)
        bits = _mix(base[:, None] + position * _GOLDEN)
    return ((bits >> np.uint64(40)).astype(np.float32)) * np.float32(2.0**-24)


def noise_width(spec: Mapping[str, NoiseSpec]) -> int:
    """Uniforms one step consumes for ``spec`` (two per normal number)."""
    total = 0
    for s in spec.values():
        n = int(np.prod(s.shape, dtype=np.int64))
        total += 2 * n if s.distribution == "normal" else n
    return total


def counter_noise(
    spec: Mapping[str, NoiseSpec], keys: np.ndarray, counters: np.ndarray, extra: int = 0
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Noise ``{name: float32 [N, *shape]}`` for one step, plus ``extra`` uniforms ``[N, extra]``
    (e.g. for sampling terminations) from the same stream, after the model's noise."""
    uniforms = counter_uniform(keys, counters, noise_width(spec) + extra)
    n = uniforms.shape[0]
    out: dict[str, np.ndarray] = {}
    at = 0
    for name, s in spec.items():
        size = int(np.prod(s.shape, dtype=np.int64))
        if s.distribution == "normal":
            u1 = uniforms[:, at : at + size]
            u2 = uniforms[:, at + size : at + 2 * size]
            radius = np.sqrt(-2.0 * np.log1p(-u1))  # 1 - u1 lies in (0, 1]
            values = (radius * np.cos(np.float32(2.0 * np.pi) * u2)).astype(np.float32)
            at += 2 * size
        else:
            values = uniforms[:, at : at + size]
            at += size
        out[name] = np.ascontiguousarray(values.reshape(n, *s.shape))
    return out, uniforms[:, at : at + extra]
