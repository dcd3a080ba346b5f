"""The ONNX Runtime backend of the dream core: a learned simulator's exported graphs, run with
numpy + onnxruntime only (no torch), on the CPU or on a CUDA device with IO binding.

Graphs (written by :mod:`worldflux.export.onnx`; N = environments, K = environments reset):

* ``encode.onnx``: ``obs [N, *O]`` -> ``state.<key> [N, ...]`` for every state key;
* ``step.onnx``: ``state.<key>``, ``action [N, A]``, ``noise.<key> [N, ...]`` ->
  ``next.<key>``, ``obs [N, *O]``, ``reward [N]``, ``continue [N]`` (probability) and, for models
  with uncertainty, ``uncertainty [N]``;
* ``replace.onnx``: ``state.<key> [N, ...]``, ``index [K]`` (int64), ``new.<key> [K, ...]`` ->
  ``out.<key> [N, ...]`` (the rows at ``index`` replaced). Used on CUDA, where the state stays on
  the device; on the CPU the state is numpy and rows are replaced in place of a copy.

:class:`OnnxLayout` (the ``"onnx"`` section of an artifact's ``manifest.json``) names the state
keys, noise inputs and shapes, so the runtime needs nothing else from the model.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..core.errors import ConfigError, SerializationError
from ..core.noise import NoiseSpec
from .backend import StepResult

ONNX_FILES = {"encode": "encode.onnx", "step": "step.onnx", "replace": "replace.onnx"}
LAYOUT_VERSION = 1
OnFallback = Literal["raise", "warn"]


class OnnxDeviceError(ConfigError, RuntimeError):
    """A CUDA session was asked for and ONNX Runtime could not give one."""


@dataclass(frozen=True)
class OnnxLayout:
    """What the exported graphs take and give.

    Attributes:
        state: ``{key: per-environment shape}`` of the state tensors (float32), in graph order.
        noise: the model's noise inputs (:class:`NoiseSpec` per key), in graph order.
        obs_shape: model-layout observation shape; ``obs_dtype`` its dtype (``"float32"`` or
            ``"uint8"`` for images).
        action_dim: size of the (float32) action input.
        uncertainty: whether ``step`` outputs ``uncertainty``.
        latent: state keys that make the latent features (latent-observation mode).
        opset: the ONNX opset of the graphs.
        exporter: versions that wrote them (``{"worldflux": ..., "torch": ...}``).
    """

    state: dict[str, tuple[int, ...]]
    noise: dict[str, NoiseSpec]
    obs_shape: tuple[int, ...]
    obs_dtype: str
    action_dim: int
    uncertainty: bool
    latent: tuple[str, ...]
    opset: int
    exporter: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {
            "layout_version": LAYOUT_VERSION,
            "files": dict(ONNX_FILES),
            "state": {k: list(v) for k, v in self.state.items()},
            "noise": {
                k: {"shape": list(s.shape), "distribution": s.distribution}
                for k, s in self.noise.items()
            },
            "obs_shape": list(self.obs_shape),
            "obs_dtype": self.obs_dtype,
            "action_dim": self.action_dim,
            "uncertainty": self.uncertainty,
            "latent": list(self.latent),
            "opset": self.opset,
            "exporter": dict(self.exporter),
            "normalisation": "inside the graphs: they take and give observations, actions and "
            "rewards in the environment's units",
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OnnxLayout:
        version = data.get("layout_version")
        if not isinstance(version, int) or version > LAYOUT_VERSION:
            raise SerializationError(
                f"ONNX layout_version {version!r} is not supported (this library reads up to "
                f"{LAYOUT_VERSION}); upgrade worldflux."
            )
        try:
            return cls(
                state={k: tuple(int(d) for d in v) for k, v in data["state"].items()},
                noise={
                    k: NoiseSpec(tuple(int(d) for d in v["shape"]), v["distribution"])
                    for k, v in data["noise"].items()
                },
                obs_shape=tuple(int(d) for d in data["obs_shape"]),
                obs_dtype=str(data["obs_dtype"]),
                action_dim=int(data["action_dim"]),
                uncertainty=bool(data["uncertainty"]),
                latent=tuple(str(k) for k in data.get("latent", data["state"])),
                opset=int(data["opset"]),
                exporter={str(k): str(v) for k, v in data.get("exporter", {}).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SerializationError(f"malformed ONNX layout in the manifest: {exc!r}") from exc


@dataclass(frozen=True)
class OnnxGraphs:
    """The three graphs (file paths or serialized bytes) and their layout."""

    layout: OnnxLayout
    encode: str | bytes
    step: str | bytes
    replace: str | bytes

    @classmethod
    def from_folder(cls, folder: str | Path, layout: OnnxLayout) -> OnnxGraphs:
        root = Path(folder)
        paths = {name: root / file for name, file in ONNX_FILES.items()}
        missing = [str(p) for p in paths.values() if not p.is_file()]
        if missing:
            raise SerializationError(
                f"{root}: the manifest lists ONNX graphs, but {missing} are missing; re-export "
                "with `worldflux export`."
            )
        return cls(layout, *(str(paths[name]) for name in ("encode", "step", "replace")))


def _device_id(device: str) -> int:
    """``"cuda"`` -> 0, ``"cuda:2"`` -> 2."""
    _, _, index = device.partition(":")
    if index and not index.isdigit():
        raise ConfigError(f"device: expected 'cpu', 'cuda' or 'cuda:N', got {device!r}.")
    return int(index or 0)


class OnnxBackend:
    """Runs :class:`OnnxGraphs` on ONNX Runtime (see the module docstring).

    Args:
        graphs: the exported graphs.
        device: ``"cpu"`` or ``"cuda[:N]"`` (CUDA execution provider; the state stays on the
            device between steps and only observations, rewards and flags are copied out).
        threads: intra-op threads of the CPU sessions (None: ONNX Runtime's default, one per
            physical core). Threads never spin while idle, so an agent that shares the process
            (e.g. a stable-baselines3 policy on torch) gets the cores between steps.
        on_fallback: when CUDA was asked for and ONNX Runtime gives only the CPU: ``"raise"``
            (:class:`OnnxDeviceError`) or ``"warn"`` (a ``RuntimeWarning``, then run on the CPU).
    """

    def __init__(
        self,
        graphs: OnnxGraphs,
        *,
        device: str = "cpu",
        threads: int | None = None,
        on_fallback: OnFallback = "raise",
    ) -> None:
        import onnxruntime as ort

        if on_fallback not in ("raise", "warn"):
            raise ConfigError(f"on_fallback: expected 'raise' or 'warn', got {on_fallback!r}.")
        if threads is not None and threads < 1:
            raise ConfigError(f"threads: expected >= 1 or None, got {threads}.")
        if device != "cpu" and not device.startswith("cuda"):
            raise ConfigError(f"device: expected 'cpu', 'cuda' or 'cuda:N', got {device!r}.")
        layout = graphs.layout
        self.layout = layout
        self.obs_shape = layout.obs_shape
        self.action_dim = layout.action_dim
        self.noise_spec: Mapping[str, NoiseSpec] = dict(layout.noise)
        self.keys = list(layout.state)
        self.latent_keys = layout.latent
        self._obs_dtype = np.dtype(layout.obs_dtype)

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.inter_op_num_threads = 1
        if threads is not None:
            options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only: a CUDA fallback is reported below, loudly
        self.cuda = device.startswith("cuda")
        self._device_id = _device_id(device) if self.cuda else 0
        providers: list[Any] = ["CPUExecutionProvider"]
        if self.cuda:
            # TF32 off: the graphs then agree with float32 torch to ~1e-5 on the GPU too
            cuda_options = {"device_id": self._device_id, "use_tf32": 0}
            providers.insert(0, ("CUDAExecutionProvider", cuda_options))
            preload = getattr(ort, "preload_dlls", None)  # CUDA/cuDNN from nvidia-* wheels
            if preload is not None:  # best effort: a failure shows in the provider check below
                with warnings.catch_warnings(), contextlib.suppress(Exception):
                    warnings.simplefilter("ignore")
                    preload()

        def session(graph: str | bytes) -> Any:
            return ort.InferenceSession(graph, options, providers=providers)

        self._encode = session(graphs.encode)
        self._step = session(graphs.step)
        if self.cuda and "CUDAExecutionProvider" not in self._step.get_providers():
            message = (
                f"device={device!r}: ONNX Runtime gave providers {self._step.get_providers()} "
                f"(available here: {ort.get_available_providers()}); install the `gpu` extra "
                "(onnxruntime-gpu) with a matching CUDA, use backend='torch' (PyTorch on CUDA), "
                "or use device='cpu'."
            )
            if on_fallback == "raise":
                raise OnnxDeviceError(message)
            warnings.warn(message + " Running on the CPU.", RuntimeWarning, stacklevel=2)
            self.cuda = False
        self._replace = session(graphs.replace) if self.cuda else None
        self.providers: list[str] = list(self._step.get_providers())
        self._host_outputs = ["obs", "reward", "continue"] + (
            ["uncertainty"] if layout.uncertainty else []
        )
        self._step_outputs = [f"next.{k}" for k in self.keys] + self._host_outputs
        self._encode_outputs = [f"state.{k}" for k in self.keys]

    # -- the backend protocol ----------------------------------------------------------------------
    def encode(self, obs: np.ndarray) -> dict[str, Any]:
        feed = {"obs": np.ascontiguousarray(obs, dtype=self._obs_dtype)}
        if not self.cuda:
            values = self._encode.run(self._encode_outputs, feed)
            return dict(zip(self.keys, values, strict=True))
        binding = self._encode.io_binding()
        binding.bind_cpu_input("obs", feed["obs"])
        for name in self._encode_outputs:
            binding.bind_output(name, "cuda", self._device_id)
        self._encode.run_with_iobinding(binding)
        return dict(zip(self.keys, binding.get_outputs(), strict=True))

    def step(
        self, state: dict[str, Any], action: np.ndarray, noise: Mapping[str, np.ndarray]
    ) -> tuple[dict[str, Any], StepResult]:
        n = len(self.keys)
        if not self.cuda:
            feed: dict[str, np.ndarray] = {f"state.{k}": state[k] for k in self.keys}
            feed["action"] = action
            feed.update({f"noise.{k}": v for k, v in noise.items()})
            values = self._step.run(self._step_outputs, feed)
            nxt = dict(zip(self.keys, values[:n], strict=True))
            host = values[n:]
        else:
            binding = self._step.io_binding()
            for k in self.keys:
                binding.bind_ortvalue_input(f"state.{k}", state[k])
            binding.bind_cpu_input("action", action)
            for k, v in noise.items():
                binding.bind_cpu_input(f"noise.{k}", v)
            for k in self.keys:
                binding.bind_output(f"next.{k}", "cuda", self._device_id)
            for name in self._host_outputs:
                binding.bind_output(name, "cpu")
            self._step.run_with_iobinding(binding)
            outputs = binding.get_outputs()
            nxt = dict(zip(self.keys, outputs[:n], strict=True))
            host = [v.numpy() for v in outputs[n:]]
        return nxt, StepResult(
            obs=host[0],
            reward=host[1],
            continue_prob=host[2],
            uncertainty=host[3] if self.layout.uncertainty else None,
        )

    def latent(self, state: dict[str, Any]) -> np.ndarray:
        parts = [state[k].numpy() if self.cuda else state[k] for k in self.latent_keys]
        return np.concatenate([p.reshape(len(p), -1) for p in parts], 1).astype(np.float32)

    def replace(
        self, state: dict[str, Any], index: np.ndarray, new: dict[str, Any]
    ) -> dict[str, Any]:
        if not self.cuda:
            out = {}
            for k in self.keys:
                value = state[k].copy()
                value[index] = new[k]
                out[k] = value
            return out
        assert self._replace is not None
        binding = self._replace.io_binding()
        for k in self.keys:
            binding.bind_ortvalue_input(f"state.{k}", state[k])
            binding.bind_ortvalue_input(f"new.{k}", new[k])
            binding.bind_output(f"out.{k}", "cuda", self._device_id)
        binding.bind_cpu_input("index", np.ascontiguousarray(index, dtype=np.int64))
        self._replace.run_with_iobinding(binding)
        return dict(zip(self.keys, binding.get_outputs(), strict=True))
