"""The ``worldflux`` command."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Any

from ._version import __version__

_PACKAGES = (
    "torch",
    "numpy",
    "gymnasium",
    "mujoco",
    "minari",
    "stable-baselines3",
    "onnx",
    "onnxscript",
    "onnxruntime",
    "onnxruntime-gpu",
    "safetensors",
)


def _dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def collect_info() -> dict[str, Any]:
    """Versions, ONNX Runtime providers, registered families and plugins, as a JSON-ready dict."""
    from .core.components import ComponentRegistry
    from .core.model import CONTRACT_VERSION
    from .core.plugins import PLUGIN_API_VERSION, plugin_records
    from .core.registry import WorldModelRegistry
    from .core.serialization import FORMAT_VERSION

    warnings: list[str] = []
    packages = {name: _dist_version(name) for name in _PACKAGES}
    if packages["onnxruntime"] and packages["onnxruntime-gpu"]:
        warnings.append(
            "both onnxruntime and onnxruntime-gpu are installed; they overwrite each other's "
            "module. Reinstall one (see README, 'GPU (ONNX Runtime CUDA)')."
        )
    try:
        import onnxruntime

        providers: list[str] = list(onnxruntime.get_available_providers())
    except ImportError as exc:
        providers = []
        warnings.append(f"onnxruntime cannot be imported: {exc}")
    try:
        import torch

        torch_device = {
            "cuda_available": torch.cuda.is_available(),
            "cuda_devices": [
                torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
            ],
            "num_threads": torch.get_num_threads(),
        }
    except ImportError as exc:  # pragma: no cover - torch is a dependency
        torch_device = {}
        warnings.append(f"torch cannot be imported: {exc}")

    families = {
        name: {
            "aliases": list(entry.aliases),
            "presets": sorted(entry.presets),
            "default_preset": entry.config_cls.default_preset,
            "source": entry.source,
        }
        for name, entry in WorldModelRegistry.families().items()
    }
    plugins = [
        {
            "group": r.group,
            "name": r.name,
            "target": r.target,
            "distribution": r.distribution,
            "status": r.status,
            "reason": r.reason,
            "families": r.families,
            "components": r.components,
        }
        for r in plugin_records()
    ]
    return {
        "worldflux": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "contract_version": CONTRACT_VERSION,
        "format_version": FORMAT_VERSION,
        "plugin_api_version": PLUGIN_API_VERSION,
        "packages": packages,
        "torch": torch_device,
        "onnxruntime_providers": providers,
        "families": families,
        "components": ComponentRegistry.names(),
        "plugins": plugins,
        "warnings": warnings,
    }


def _print_info(info: dict[str, Any]) -> None:
    print(f"WorldFlux {info['worldflux']}  (Python {info['python']}, {info['platform']})")
    print(
        f"  contract v{info['contract_version']}, save format v{info['format_version']}, "
        f"plugin API v{info['plugin_api_version']}"
    )
    print("\nPackages")
    for name, version in info["packages"].items():
        print(f"  {name:<18} {version or '-'}")
    t = info["torch"]
    if t:
        gpus = ", ".join(t["cuda_devices"]) or "none"
        print(f"\nPyTorch: CUDA {'available' if t['cuda_available'] else 'not available'} "
              f"(GPUs: {gpus}); {t['num_threads']} CPU threads")  # fmt: skip
    print(f"ONNX Runtime providers: {', '.join(info['onnxruntime_providers']) or 'none'}")
    print("\nWorld-model families")
    if not info["families"]:
        print("  (none registered)")
    for name, fam in info["families"].items():
        aliases = f" (aliases: {', '.join(fam['aliases'])})" if fam["aliases"] else ""
        presets = ", ".join(fam["presets"]) or "-"
        print(f"  {name}{aliases}: presets {presets}; from {fam['source']}")
    if info["components"]:
        print("\nRegistered components")
        for name, role in info["components"].items():
            print(f"  {name} ({role})")
    print("\nPlugins")
    if not info["plugins"]:
        print("  (none installed)")
    for p in info["plugins"]:
        detail = f": {p['reason']}" if p["reason"] else ""
        print(f"  {p['name']} [{p['group']}] from {p['distribution']}: {p['status']}{detail}")
    for warning in info["warnings"]:
        print(f"\nWARNING: {warning}")


def _cmd_info(args: argparse.Namespace) -> int:
    info = collect_info()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print_info(info)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="worldflux",
        description="Learned simulators from logged RL data: train world models on Minari "
        "datasets and serve them as Gymnasium environments.",
    )
    parser.add_argument("--version", action="version", version=f"worldflux {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = sub.add_parser(
        "info", help="versions, registered families and plugins, ONNX Runtime providers"
    )
    info.add_argument("--json", action="store_true", help="print machine-readable JSON")
    info.set_defaults(func=_cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    import worldflux  # noqa: F401  (registers families and loads plugins)

    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
