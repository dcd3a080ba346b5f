"""Optional dependencies. PyTorch is needed to build, train and export world models; a dream
environment made from an exported artifact runs on numpy + onnxruntime + gymnasium alone, so the
package imports without it (the torch-only API then raises
:class:`~worldflux.core.errors.TorchMissingError`)."""

from __future__ import annotations

from functools import cache


@cache
def torch_available() -> bool:
    """Whether ``import torch`` works here."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


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
