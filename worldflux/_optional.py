"""Optional dependencies. PyTorch is needed to build, train and export world models; a dream
environment made from an exported artifact runs on numpy + onnxruntime + gymnasium alone, so the
package imports without it (the torch-only API then raises
:class:`~worldflux.core.errors.TorchMissingError`).

Torch is also imported lazily where it is installed: ``import worldflux`` and the ONNX dream path
never load it (importing torch takes seconds on a busy machine); the torch-only names of a package
are resolved by its module ``__getattr__`` through :func:`lazy_attribute` on first use.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Mapping
from typing import Any


def torch_available() -> bool:
    """Whether torch is installed here (found by the import system; not imported)."""
    if "torch" in sys.modules:
        return sys.modules["torch"] is not None
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # a finder that refuses torch, or a broken entry
        return False


def _message(what: str) -> str:
    return (
        f"{what} needs PyTorch, which cannot be imported here. Without torch, WorldFlux runs "
        "exported dream environments on ONNX Runtime (backend='onnx'); install torch "
        "(e.g. `pip install torch==2.13.0`) to build, train or export models."
    )


def torch_missing(what: str) -> Exception:
    """A :class:`~worldflux.core.errors.TorchMissingError` for ``what``."""
    from .core.errors import TorchMissingError

    return TorchMissingError(_message(what))


def missing_attribute(module: str, torch_names: frozenset[str], name: str) -> Exception:
    """The error for a failed ``module.name``: torch-only names say that torch is missing."""
    if name in torch_names and not torch_available():
        from .core.errors import TorchMissingAttributeError

        return TorchMissingAttributeError(_message(f"{module}.{name}"))
    return AttributeError(f"module {module!r} has no attribute {name!r}")


def lazy_attribute(package: str, sources: Mapping[str, str], name: str) -> Any:
    """``package.name`` imported on first use from the submodule ``sources[name]`` (relative
    to ``package``, e.g. ``".core"``) and cached in the package; for a package's ``__getattr__``.

    Raises:
        TorchMissingAttributeError: ``name`` is a torch-only name and torch is missing.
        AttributeError: ``name`` is not one of ``sources``.
    """
    source = sources.get(name)
    if source is None or not torch_available():
        raise missing_attribute(package, frozenset(sources), name)
    try:
        value = getattr(importlib.import_module(source, package), name)
    except ImportError as exc:  # installed but broken (e.g. a missing shared library)
        if exc.name is not None and exc.name.split(".")[0] == "torch":
            raise torch_missing(f"{package}.{name}") from exc
        raise
    setattr(sys.modules[package], name, value)
    return value
