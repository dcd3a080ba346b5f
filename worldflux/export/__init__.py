"""Export: world models to ONNX graphs for the torch-free dream runtime."""

from .artifact import export_artifact
from .onnx import ONNX_OPSET, ExportError, export_graphs, write_graphs

__all__ = ["ONNX_OPSET", "ExportError", "export_artifact", "export_graphs", "write_graphs"]
