"""`save_pretrained` / `load_pretrained`: a model as a directory of JSON and safetensors.

Layout of a saved directory::

    config.json        {"model_type", "config": {...}, "component_overrides": {role: spec}}
    model.safetensors  the state dict (parameters and persistent buffers)
    metadata.json      {"format_version", "library_version", "contract_version", "model_type",
                        "weights_file", "weights_bytes", "weights_sha256", "torch_version"}

Nothing is unpickled: configs are JSON and weights are safetensors. Component overrides saved as
``"pkg.mod:Class"`` import paths are imported only with ``trust_imports=True``; registered
component names always resolve.

Saving is deterministic: the same model gives the same bytes in every process (the safetensors
header is rewritten in one canonical order, :func:`canonicalise_safetensors_header`).

Writes are atomic: files go to a temporary sibling directory that is renamed into place, so a
crash never leaves a half-written model under the target name.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .._version import __version__
from ..files import read_json_object, refuse_foreign_folder, sha256_file
from .errors import ConfigError, RegistryError, SerializationError, unknown_name_message
from .model import CONTRACT_VERSION, WorldModel

#: Version of the on-disk layout; bumped on incompatible changes.
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
METADATA_FILE = "metadata.json"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _plain_state_dict(model: WorldModel) -> dict[str, torch.Tensor]:
    """CPU, contiguous tensors; tensors sharing storage are copied (safetensors needs that)."""
    seen: set[int] = set()
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        tensor = value.detach().cpu().contiguous()
        ptr = tensor.untyped_storage().data_ptr()
        if ptr in seen:
            tensor = tensor.clone()
        seen.add(tensor.untyped_storage().data_ptr())
        out[key] = tensor
    return out


def _canonical_header(raw: bytes) -> bytes:
    """The safetensors header ``raw`` (JSON) written one fixed way: tensors in the order of their
    data, ``__metadata__`` first with sorted keys, no spaces, padded with spaces to a multiple of
    8 bytes (where safetensors aligns the data)."""
    header: dict[str, Any] = json.loads(raw)
    metadata = header.pop("__metadata__", None)
    tensors = sorted(header.items(), key=lambda item: (item[1]["data_offsets"], item[0]))
    ordered: dict[str, Any] = (
        {} if metadata is None else {"__metadata__": dict(sorted(metadata.items()))}
    )
    ordered.update(tensors)
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return text + b" " * (-len(text) % 8)


def canonicalise_safetensors_header(path: Path) -> None:
    """Rewrite the header of the safetensors file ``path`` canonically (see
    :func:`_canonical_header`), so the same tensors always give the same bytes.

    safetensors keeps the metadata in a Rust ``HashMap``, whose iteration order changes from one
    process to the next; the tensor data itself is laid out deterministically and is untouched.
    """
    with path.open("r+b") as fh:
        size = int.from_bytes(fh.read(8), "little")
        raw = fh.read(size)
        header = _canonical_header(raw)
        if len(header) == size:  # the usual case: same keys, same length, rewrite in place
            fh.seek(8)
            fh.write(header)
            return
    rewritten = path.with_name(f".{path.name}.header-tmp")
    with path.open("rb") as src, rewritten.open("wb") as dst:
        src.seek(8 + size)
        dst.write(len(header).to_bytes(8, "little") + header)
        shutil.copyfileobj(src, dst, 1 << 20)
    rewritten.replace(path)


def ordinary_mode(bits: int = 0o777) -> int:
    """``bits`` under the current umask: the mode ``mkdir`` (0o777) or ``open`` (0o666) gives a
    new directory or file; for things made private by ``tempfile`` before they are published."""
    umask = os.umask(0)
    os.umask(umask)
    return bits & ~umask


def replace_dir_atomically(staged: Path, target: Path) -> None:
    """Move the finished directory ``staged`` to ``target``, replacing an old one. ``staged``
    (made by ``tempfile.mkdtemp``, mode 0700) gets the mode of an ordinary new directory."""
    os.chmod(staged, ordinary_mode())
    if target.exists():
        if not target.is_dir():
            raise SerializationError(f"{target}: exists and is not a directory.")
        backup = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        backup.rmdir()
        os.rename(target, backup)
        try:
            os.rename(staged, target)
        except BaseException:
            os.rename(backup, target)  # put the previous model back under its name
            raise
        shutil.rmtree(backup, ignore_errors=True)
    else:
        os.rename(staged, target)


def save_pretrained(model: WorldModel, directory: str | os.PathLike[str]) -> Path:
    """Write ``model`` to ``directory`` (created or replaced atomically); return the path.

    An existing ``directory`` is replaced only if it is empty or itself a saved model, so a
    mistyped path never deletes unrelated files.
    """
    target = Path(directory)
    for role, spec in model.component_specs.items():
        if "<locals>" in spec:
            raise SerializationError(
                f"cannot save {target}: the {role} override {spec} is a class defined inside a "
                "function, which no loader can import. Define it at module level or register it "
                "with ComponentRegistry.register."
            )
    refuse_foreign_folder(target, METADATA_FILE, "saved WorldFlux model")
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        _write_json(
            staged / CONFIG_FILE,
            {
                "model_type": model.model_type,
                "config": model.config.to_dict(),
                "component_overrides": dict(model.component_specs),
            },
        )
        weights = staged / WEIGHTS_FILE
        save_file(
            _plain_state_dict(model),
            str(weights),
            metadata={"format": "pt", "worldflux_model_type": model.model_type},
        )
        canonicalise_safetensors_header(weights)
        os.chmod(weights, ordinary_mode(0o666))  # safetensors writes it private (0o600)
        _fsync(weights)
        _write_json(
            staged / METADATA_FILE,
            {
                "format_version": FORMAT_VERSION,
                "library_version": __version__,
                "contract_version": CONTRACT_VERSION,
                "model_type": model.model_type,
                "weights_file": WEIGHTS_FILE,
                "weights_bytes": weights.stat().st_size,
                "weights_sha256": sha256_file(weights),
                "torch_version": torch.__version__,
            },
        )
        replace_dir_atomically(staged, target)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return target


def import_paths(value: Any) -> list[str]:
    """Every string in ``value`` (nested dicts, lists and tuples) that a loader could import:
    one with a non-empty part before a ``:``, as in ``"package.module:attr"``, in order."""
    if isinstance(value, str):
        module, sep, _ = value.partition(":")
        return [value] if sep and module.strip() else []
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in import_paths(key) + import_paths(item)]
    if isinstance(value, list | tuple):
        return [p for item in value for p in import_paths(item)]
    return []


def is_library_import(path: str) -> bool:
    """Whether ``"package.module:attr"`` names an object WorldFlux itself defines: the module is
    part of the ``worldflux`` package and the object was defined there (a module WorldFlux
    imports, say ``os``, reached through one of its modules does not count). Importing a module
    of this library runs nothing a user did not install with it."""
    module = path.partition(":")[0]
    if module.split(".")[0] != "worldflux":
        return False
    from .components import import_object

    try:
        obj = import_object(path)
    except ConfigError:
        return False
    return str(getattr(obj, "__module__", "")).split(".")[0] == "worldflux"


def untrusted_imports(value: Any) -> list[str]:
    """The import paths in ``value`` (see :func:`import_paths`) that are not the library's own:
    the ones that need ``trust_imports`` when ``value`` comes from a file."""
    return [p for p in import_paths(value) if not is_library_import(p)]


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SerializationError(
            f"{path.parent}: missing {path.name}; not a saved WorldFlux model."
        )
    return read_json_object(path)


def _field(data: dict[str, Any], key: str, kind: type | tuple[type, ...], path: Path) -> Any:
    if key not in data:
        raise SerializationError(f"{path}: missing field {key!r}.")
    value = data[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise SerializationError(
            f"{path}: field {key!r} expected {getattr(kind, '__name__', kind)}, got {value!r}."
        )
    return value


def read_metadata(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check ``metadata.json`` (format and contract versions)."""
    path = Path(directory)
    if not path.is_dir():
        raise SerializationError(f"{path}: no such model directory.")
    meta = _read_json(path / METADATA_FILE)
    fmt = _field(meta, "format_version", int, path / METADATA_FILE)
    if fmt > FORMAT_VERSION:
        raise SerializationError(
            f"{path}: saved with format version {fmt} (library {meta.get('library_version')}); "
            f"this worldflux {__version__} reads format <= {FORMAT_VERSION}. Upgrade worldflux."
        )
    contract = _field(meta, "contract_version", int, path / METADATA_FILE)
    if contract > CONTRACT_VERSION:
        raise SerializationError(
            f"{path}: saved with WorldModel contract {contract}; this worldflux supports "
            f"<= {CONTRACT_VERSION}. Upgrade worldflux."
        )
    return meta


def _load_weights(path: Path, meta: dict[str, Any]) -> dict[str, torch.Tensor]:
    name = _field(meta, "weights_file", str, path / METADATA_FILE)
    weights = path / name
    if Path(name).name != name:
        raise SerializationError(f"{path}: weights_file must be a plain file name, got {name!r}.")
    if not weights.is_file():
        raise SerializationError(f"{path}: weights file {name} is missing.")
    expected_bytes = _field(meta, "weights_bytes", int, path / METADATA_FILE)
    size = weights.stat().st_size
    if size != expected_bytes:
        raise SerializationError(
            f"{weights}: expected {expected_bytes} bytes, found {size} (truncated or replaced)."
        )
    expected_sha = _field(meta, "weights_sha256", str, path / METADATA_FILE)
    if sha256_file(weights) != expected_sha:
        raise SerializationError(f"{weights}: checksum mismatch; the file is corrupt.")
    try:
        return load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise SerializationError(f"{weights}: unreadable safetensors file ({exc}).") from None


def _check_state_dict(model: WorldModel, weights: dict[str, torch.Tensor], path: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    mismatched = [
        f"{k}: model {list(expected[k].shape)}, file {list(weights[k].shape)}"
        for k in sorted(set(expected) & set(weights))
        if tuple(expected[k].shape) != tuple(weights[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing tensors {missing}")
    if unexpected:
        problems.append(f"unexpected tensors {unexpected}")
    if mismatched:
        problems.append("shape mismatches: " + "; ".join(mismatched))
    if problems:
        raise SerializationError(
            f"{path}: weights do not fit the {model.model_type!r} model built from its config: "
            + " | ".join(problems)
        )


def load_pretrained(
    directory: str | os.PathLike[str],
    *,
    device: torch.device | str = "cpu",
    trust_imports: bool = False,
    expected_cls: type[WorldModel] | None = None,
) -> WorldModel:
    """Build the model described by ``directory`` and load its weights.

    Args:
        device: where the parameters go.
        trust_imports: allow component overrides saved as ``"pkg.mod:Class"`` to be imported.
        expected_cls: raise unless the saved family is this class (or a subclass).
    """
    from .registry import WorldModelRegistry

    path = Path(directory)
    meta = read_metadata(path)
    cfg_file = _read_json(path / CONFIG_FILE)
    model_type = _field(cfg_file, "model_type", str, path / CONFIG_FILE)
    if model_type != meta.get("model_type"):
        raise SerializationError(
            f"{path}: config.json says model type {model_type!r}, metadata.json says "
            f"{meta.get('model_type')!r}."
        )
    try:
        entry = WorldModelRegistry.get(model_type)
    except RegistryError:
        raise SerializationError(
            unknown_name_message("world-model family", model_type, WorldModelRegistry.families())
            + f" ({path} needs it; is the plugin that provides it installed?)"
        ) from None
    if expected_cls is not None and not issubclass(entry.model_cls, expected_cls):
        raise SerializationError(
            f"{path}: holds a {model_type!r} model ({entry.model_cls.__name__}), "
            f"expected {expected_cls.__name__} ({expected_cls.model_type or 'any family'})."
        )
    config_data = _field(cfg_file, "config", dict, path / CONFIG_FILE)
    overrides = _field(cfg_file, "component_overrides", dict, path / CONFIG_FILE)
    try:
        config = entry.config_cls.from_dict({**entry.config_cls.saved_defaults, **config_data})
    except ConfigError as exc:
        raise SerializationError(f"{path / CONFIG_FILE}: {exc}") from None
    model = entry.model_cls(config, component_overrides=overrides, trust_imports=trust_imports)
    weights = _load_weights(path, meta)
    weights = model.upgrade_weights(weights)
    _check_state_dict(model, weights, path)
    model.load_state_dict(weights, strict=True)
    return model.to(device)
