"""Export a world model to the ONNX graphs the dream runtime runs
(:mod:`worldflux.dream.onnx_backend` describes them): ``encode``, ``step`` with the noise as an
explicit input (so ONNX Runtime and torch give the same trajectory for the same noise) and
``replace``; every graph has a dynamic batch axis and keeps its weights inside (no external data).

Any family that follows the contract exports: ``encode(obs)``, ``transition(state, action,
noise=...)`` and ``decode(state)`` are traced with ``torch.export`` and translated by
``torch.onnx`` (which needs ``onnxscript``).
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._version import __version__
from ..core.errors import WorldFluxError
from ..core.model import WorldModel
from ..core.state import State
from ..dream.onnx_backend import ONNX_FILES, OnnxGraphs, OnnxLayout

#: the opset the graphs are written in (ONNX Runtime >= 1.16 runs it)
ONNX_OPSET = 18
#: IR version of replace.onnx: the one of opset 18, which older ONNX Runtimes read too (onnx's
#: default is its newest, which ONNX Runtime may not read yet)
REPLACE_IR_VERSION = 8
#: batch size of the example inputs (not 0 or 1, which torch.export would specialise on)
EXAMPLE_BATCH = 3


class ExportError(WorldFluxError, RuntimeError):
    """A model could not be exported, or its graphs failed the ONNX checker."""


class _EncodeGraph(nn.Module):
    def __init__(self, model: WorldModel, keys: list[str]) -> None:
        super().__init__()
        self.model, self.keys = model, keys

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        state = self.model.encode(obs)
        return tuple(state[k].float() for k in self.keys)


class _StepGraph(nn.Module):
    def __init__(
        self, model: WorldModel, keys: list[str], noise_keys: list[str], uncertainty: bool
    ) -> None:
        super().__init__()
        self.model, self.keys, self.noise_keys = model, keys, noise_keys
        self.uncertainty = uncertainty
        self.decoded = bool(model.decodes_observations)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n = len(self.keys)
        state = State(dict(zip(self.keys, inputs[:n], strict=True)))
        action = inputs[n]
        noise = dict(zip(self.noise_keys, inputs[n + 1 :], strict=True))
        nxt = self.model.transition(state, action, noise=noise or None)
        out = self.model.decode(nxt)
        values = [nxt[k].float() for k in self.keys]
        if self.decoded:
            values.append(out.obs.float())
        values += [out.reward.float(), out.continue_prob.float()]
        if self.uncertainty:
            assert out.uncertainty is not None
            values.append(out.uncertainty.float())
        return tuple(values)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's progress prints, log lines and deprecation chatter stay out of the
    user's output (failures still raise)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _to_onnx(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    input_names: list[str],
    output_names: list[str],
    what: str,
    *,
    varargs: bool = False,
) -> bytes:
    batch = torch.export.Dim("batch")
    per_input = tuple({0: batch} for _ in args)
    try:
        with _quiet():
            program = torch.onnx.export(
                module,
                args,
                dynamo=True,
                opset_version=ONNX_OPSET,
                input_names=input_names,
                output_names=output_names,
                dynamic_shapes=(per_input,) if varargs else per_input,
                optimize=True,
                external_data=False,
            )
    except Exception as exc:  # the exporter raises many types; all mean "cannot export"
        cause = exc.__cause__ or exc
        lines = str(cause).strip().splitlines()
        raise ExportError(
            f"{what}: torch.onnx could not export it ({type(cause).__name__}: "
            f"{lines[0] if lines else ''}). The model must trace with torch.export: no "
            "data-dependent shapes and no Python control flow on tensor values."
        ) from exc
    assert program is not None
    data: bytes = program.model_proto.SerializeToString()
    return data


def _check(data: bytes, what: str) -> None:
    import onnx

    try:
        onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    except Exception as exc:
        raise ExportError(f"{what}: the ONNX checker rejected the graph: {exc}") from exc


def replace_graph(state: dict[str, tuple[int, ...]]) -> bytes:
    """``replace.onnx``: ``state.<k> [N, ...]``, ``index [K]``, ``new.<k> [K, ...]`` ->
    ``out.<k> [N, ...]`` with rows ``index`` replaced (ScatterND)."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Unsqueeze", ["index", "axis"], ["rows"])]
    inputs = [helper.make_tensor_value_info("index", TensorProto.INT64, ["k"])]
    outputs = []
    for key, shape in state.items():
        nodes.append(
            helper.make_node("ScatterND", [f"state.{key}", "rows", f"new.{key}"], [f"out.{key}"])
        )
        inputs.append(
            helper.make_tensor_value_info(f"state.{key}", TensorProto.FLOAT, ["batch", *shape])
        )
        inputs.append(helper.make_tensor_value_info(f"new.{key}", TensorProto.FLOAT, ["k", *shape]))
        outputs.append(
            helper.make_tensor_value_info(f"out.{key}", TensorProto.FLOAT, ["batch", *shape])
        )
    axis = helper.make_tensor("axis", TensorProto.INT64, [1], [-1])
    graph = helper.make_graph(nodes, "worldflux_replace", inputs, outputs, initializer=[axis])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    model.ir_version = REPLACE_IR_VERSION
    model.producer_name = "worldflux"
    data: bytes = model.SerializeToString()
    return data


@dataclass
class _Probe:
    keys: list[str]
    shapes: dict[str, tuple[int, ...]]
    uncertainty: bool


def _probe(model: WorldModel, obs: torch.Tensor, action: torch.Tensor) -> _Probe:
    state = model.encode(obs)
    keys = list(state.tensors)
    for k in keys:
        if not state[k].is_floating_point():
            raise ExportError(
                f"state key {k!r} has dtype {state[k].dtype}: the ONNX runtime keeps states in "
                "float32, so every state tensor must be floating point."
            )
    out = model.decode(model.transition(state, action, deterministic=True))
    return _Probe(keys, {k: tuple(state[k].shape[1:]) for k in keys}, out.uncertainty is not None)


def export_graphs(model: WorldModel, example_obs: np.ndarray) -> OnnxGraphs:
    """Export a float32 CPU copy of ``model`` (in eval mode) to serialized graphs.

    Args:
        model: any world model that follows the contract.
        example_obs: ``[M, *O]`` observations in the model's layout (M >= 1), e.g. reset
            states; they fix the observation dtype and serve as example inputs.

    Raises:
        ExportError: the model does not trace, or a graph fails the ONNX checker.
    """
    obs_np = np.asarray(example_obs)
    if obs_np.ndim < 2 or len(obs_np) == 0:
        raise ExportError(f"example_obs: expected a non-empty [M, *O] array, got {obs_np.shape}.")
    obs_np = obs_np[np.arange(EXAMPLE_BATCH) % len(obs_np)]
    model = copy.deepcopy(model).float().cpu().eval()
    c = model.config
    obs = torch.from_numpy(np.ascontiguousarray(obs_np))
    # one-hot action 0: a valid example for Discrete (one-hot) and Box models alike
    action = torch.zeros(EXAMPLE_BATCH, int(c.action_dim))
    action[:, 0] = 1.0
    noise_spec = dict(model.noise_spec())
    noise_keys = list(noise_spec)
    noise = [
        torch.full((EXAMPLE_BATCH, *s.shape), 0.5 if s.distribution == "uniform" else 0.0)
        for s in noise_spec.values()
    ]
    with torch.no_grad():
        probe = _probe(model, obs, action)
        state = model.encode(obs)
        encode = _to_onnx(
            _EncodeGraph(model, probe.keys),
            (obs,),
            ["obs"],
            [f"state.{k}" for k in probe.keys],
            f"{model.model_type}.encode",
        )
        decoded = bool(model.decodes_observations)
        step_outputs = [f"next.{k}" for k in probe.keys]
        step_outputs += (["obs"] if decoded else []) + ["reward", "continue"]
        step = _to_onnx(
            _StepGraph(model, probe.keys, noise_keys, probe.uncertainty),
            (*(state[k].float() for k in probe.keys), action, *noise),
            [f"state.{k}" for k in probe.keys] + ["action"] + [f"noise.{k}" for k in noise_keys],
            step_outputs + (["uncertainty"] if probe.uncertainty else []),
            f"{model.model_type}.step",
            varargs=True,
        )
    replace = replace_graph(probe.shapes)
    for data, what in ((encode, "encode"), (step, "step"), (replace, "replace")):
        _check(data, f"{model.model_type}.{what}")
    layout = OnnxLayout(
        state=probe.shapes,
        noise=noise_spec,
        obs_shape=tuple(int(d) for d in obs_np.shape[1:]),
        obs_dtype=str(obs_np.dtype),
        action_dim=int(c.action_dim),
        uncertainty=probe.uncertainty,
        latent=tuple(model.latent_keys()),
        decoded=decoded,
        opset=ONNX_OPSET,
        exporter={"worldflux": __version__, "torch": torch.__version__.split("+")[0]},
    )
    return OnnxGraphs(layout, encode, step, replace)


def write_graphs(graphs: OnnxGraphs, folder: str | Path) -> None:
    """Write ``encode.onnx``, ``step.onnx`` and ``replace.onnx`` of serialized ``graphs`` into
    ``folder`` (a staging folder: artifacts are replaced atomically as a whole)."""
    root = Path(folder)
    for name, file in ONNX_FILES.items():
        data = getattr(graphs, name)
        if not isinstance(data, bytes):
            raise ExportError(f"write_graphs: expected serialized graphs, got a path for {name!r}.")
        (root / file).write_bytes(data)
