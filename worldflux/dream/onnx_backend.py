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
        decoded: whether ``step`` outputs ``obs`` (False for decoder-free models; layouts
            written before this field existed always did).
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
    decoded: bool = True

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
            "decoded": self.decoded,
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
        files = data.get("files", ONNX_FILES)
        if files != ONNX_FILES:
            raise SerializationError(
                f"ONNX files: expected {ONNX_FILES} (the only layout this library reads), "
                f"got {files!r}."
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
                decoded=bool(data.get("decoded", True)),
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


#: ONNX Runtime's names of the element types the graphs use
_ORT_TYPES = {
    "float32": "tensor(float)",
    "float64": "tensor(double)",
    "float16": "tensor(float16)",
    "uint8": "tensor(uint8)",
    "int8": "tensor(int8)",
    "int32": "tensor(int32)",
    "int64": "tensor(int64)",
}
#: a tensor's element type and per-row shape (the first, batch axis takes any size)
TensorSpec = tuple[str, tuple[int, ...]]


def graph_signature(
    layout: OnnxLayout, graph: str
) -> tuple[dict[str, TensorSpec], dict[str, TensorSpec]]:
    """The inputs and outputs (``{name: (element type, per-row shape)}``) that ``layout`` says
    graph ``graph`` (``"encode"``, ``"step"`` or ``"replace"``) has; see the module docstring."""
    f32 = _ORT_TYPES["float32"]
    obs = (_ORT_TYPES.get(layout.obs_dtype, layout.obs_dtype), layout.obs_shape)
    states = {k: (f32, shape) for k, shape in layout.state.items()}

    def named(prefix: str) -> dict[str, TensorSpec]:
        return {f"{prefix}.{k}": spec for k, spec in states.items()}

    if graph == "encode":
        return {"obs": obs}, named("state")
    if graph == "step":
        inputs = {**named("state"), "action": (f32, (layout.action_dim,))}
        inputs.update({f"noise.{k}": (f32, s.shape) for k, s in layout.noise.items()})
        outputs = named("next")
        if layout.decoded:
            outputs["obs"] = (f32, layout.obs_shape)
        outputs.update({"reward": (f32, ()), "continue": (f32, ())})
        if layout.uncertainty:
            outputs["uncertainty"] = (f32, ())
        return inputs, outputs
    if graph == "replace":
        return {**named("state"), **named("new"), "index": (_ORT_TYPES["int64"], ())}, named("out")
    raise ConfigError(f"graph: expected one of {list(ONNX_FILES)}, got {graph!r}.")


def _spec_text(spec: TensorSpec) -> str:
    return f"{spec[0]} [{', '.join(['batch', *(str(d) for d in spec[1])])}]"


def _fits(expected: TensorSpec, found_type: str, found_shape: Any) -> bool:
    """Whether a graph tensor fits ``expected``; symbolic or unknown dimensions fit any size."""
    if found_type != expected[0] or not isinstance(found_shape, list | tuple):
        return False
    rows = list(found_shape)[1:]
    return len(found_shape) == len(expected[1]) + 1 and all(
        not isinstance(d, int) or d == e for d, e in zip(rows, expected[1], strict=True)
    )


def _mismatches(kind: str, expected: dict[str, TensorSpec], found: list[Any]) -> list[str]:
    """What differs between the expected tensors and ONNX Runtime's ``NodeArg`` list: the names,
    or else each tensor whose element type or shape differs."""
    by_name = {arg.name: arg for arg in found}
    if set(by_name) != set(expected):
        return [f"{kind}s: expected {sorted(expected)}, found {sorted(by_name)}"]
    problems = []
    for name, spec in expected.items():
        arg = by_name[name]
        if not _fits(spec, arg.type, arg.shape):
            shape = ", ".join(str(d) for d in (arg.shape or []))
            problems.append(
                f"{kind} {name!r}: expected {_spec_text(spec)}, found {arg.type} [{shape}]"
            )
    return problems


def check_graph_file(path: Path, layout: OnnxLayout, graph: str) -> None:
    """Raise :class:`SerializationError` naming ``path`` unless ONNX Runtime reads it and its
    inputs and outputs are those ``layout`` gives graph ``graph`` (names, element types, per-row
    shapes): a truncated file or another graph under this name fails here, at load time, rather
    than at the first reset."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 4  # the failure is reported below, with the file's name
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own (pybind) types; all mean "unreadable"
        lines = str(exc).strip().splitlines()
        raise SerializationError(
            f"{path}: ONNX Runtime cannot read it ({type(exc).__name__}: "
            f"{lines[0] if lines else ''}); expected the {graph!r} graph of the manifest's ONNX "
            "layout. Restore the file, or export the artifact again from its training run "
            "(`worldflux export RUN --out FOLDER`)."
        ) from None
    expected_in, expected_out = graph_signature(layout, graph)
    problems = _mismatches("input", expected_in, session.get_inputs())
    problems += _mismatches("output", expected_out, session.get_outputs())
    if problems:
        raise SerializationError(
            f"{path}: does not fit the manifest's ONNX layout for the {graph!r} graph: "
            + "; ".join(problems)
            + ". Another graph may have been put in its place; restore the file, or export the "
            "artifact again from its training run (`worldflux export RUN --out FOLDER`)."
        )


def check_graph_files(folder: Path, layout: OnnxLayout) -> None:
    """:func:`check_graph_file` for the three graphs of an artifact folder."""
    for graph, file in ONNX_FILES.items():
        path = folder / file
        if not path.is_file():
            raise SerializationError(
                f"{path}: missing; the manifest lists ONNX graphs. Restore it, or export the "
                "artifact again from its training run (`worldflux export RUN --out FOLDER`)."
            )
        check_graph_file(path, layout, graph)


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
        self.decodes_observations = layout.decoded
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
        self._host_outputs = (
            (["obs"] if layout.decoded else [])
            + ["reward", "continue"]
            + (["uncertainty"] if layout.uncertainty else [])
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
        named = dict(zip(self._host_outputs, host, strict=True))
        return nxt, StepResult(
            obs=named.get("obs"),
            reward=named["reward"],
            continue_prob=named["continue"],
            uncertainty=named.get("uncertainty"),
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
