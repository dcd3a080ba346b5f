"""Reading and checking artifact folders (the layout is in :mod:`worldflux.dream.simulator`).

``manifest.json`` is checked strictly: a JSON object with the required keys
(``format_version``, ``family``, ``observation_space``, ``action_space``), no unknown keys, each
value of its type, numbers where numbers belong (``calibration``) and valid dream settings
(``defaults``).

Integrity: the manifest's ``"integrity"`` section records the sha256 and size of every other file
of the folder (hidden files aside) and the sha256 of the manifest's own content (every key but
``"integrity"``, as canonical JSON: a manifest cannot hold the hash of its own bytes). Loading
recomputes them all and raises :class:`~worldflux.core.errors.SerializationError` naming the file,
the expected and the found digest. Every file the loader reads must be listed. Files that are not
listed (added later) are ignored: they are never read.

Artifacts written before the section existed (no ``"integrity"``) still load, with an
:class:`UnverifiedArtifactWarning`: their files cannot be checked. Once they are known to be good,
``python -m worldflux.export rehash FOLDER`` records the hashes of their current files
(:func:`worldflux.export.artifact.rehash_artifact`; re-exporting with ``worldflux export`` writes
them too).
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import re
import reprlib
import warnings
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..core.errors import ConfigError, SerializationError, unknown_name_message
from ..files import sha256_file
from .core import DreamSettings, ResetStates
from .onnx_backend import ONNX_FILES

MANIFEST = "manifest.json"
RESET_STATES = "reset_states.npz"
FORMAT_VERSION = 1
#: the torch model's files (worldflux.core.serialization), relative to the artifact
MODEL_FILES = ("model/config.json", "model/metadata.json", "model/model.safetensors")
INTEGRITY = "integrity"
HASH_ALGORITHM = "sha256"
REHASH_COMMAND = "python -m worldflux.export rehash"
#: what to do about a corrupt artifact (re-exporting it in place would read the corrupt files)
REBUILD = "export the artifact again from its training run (`worldflux export RUN --out FOLDER`)"

_REQUIRED: dict[str, tuple[type, ...]] = {
    "format_version": (int,),
    "family": (str,),
    "observation_space": (dict,),
    "action_space": (dict,),
}
_OPTIONAL: dict[str, tuple[type, ...]] = {
    "source_env": (str, type(None)),
    "defaults": (dict,),
    "info": (dict,),
    "calibration": (dict,),
    "onnx": (dict,),
    INTEGRITY: (dict,),
}
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
_SHORT = reprlib.Repr()  # keyword arguments need Python 3.12
_SHORT.maxlist = _SHORT.maxdict = 8
_SHORT.maxstring = _SHORT.maxother = 80


class UnverifiedArtifactWarning(UserWarning):
    """An artifact's manifest records no file hashes, so its files could not be checked."""


# -- the manifest ----------------------------------------------------------------------------------
def read_manifest(folder: Path) -> dict[str, Any]:
    """``folder``'s manifest, parsed and checked (:func:`check_manifest`); its hashes are not
    verified here (:func:`verify_integrity`)."""
    file = folder / MANIFEST
    if not file.is_file():
        raise ConfigError(f"{folder} is not a learned-simulator artifact: no {MANIFEST}.")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SerializationError(
            f"{file}: not valid JSON ({exc}); expected the artifact's manifest, a JSON object. "
            f"Restore it, or {REBUILD}."
        ) from None
    except OSError as exc:
        raise SerializationError(f"{file}: unreadable ({exc}).") from None
    check_manifest(data, file)
    return data


def short_repr(value: Any) -> str:
    """``repr(value)``, shortened for messages (a space's bounds can be thousands of numbers)."""
    return _SHORT.repr(value)


def _type_names(kinds: tuple[type, ...]) -> str:
    names = {dict: "object", str: "string", int: "integer", type(None): "null"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def check_manifest(data: Any, file: Path) -> None:
    """Raise :class:`SerializationError` (naming ``file``) unless ``data`` is a well-formed
    manifest: format version, known keys, required keys, value types, calibration, defaults and
    the structure of the integrity section."""
    if not isinstance(data, dict):
        raise SerializationError(
            f"{file}: expected a JSON object (the artifact manifest), got {type(data).__name__}."
        )
    version = data.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise SerializationError(
            f"{file}: format_version: expected an integer >= 1, got {version!r}."
        )
    if version > FORMAT_VERSION:
        raise SerializationError(
            f"{file}: format_version {version!r} is not supported (this library reads up to "
            f"{FORMAT_VERSION}); upgrade worldflux."
        )
    kinds = {**_REQUIRED, **_OPTIONAL}
    for key in data:
        if key not in kinds:
            raise SerializationError(f"{file}: " + unknown_name_message("manifest key", key, kinds))
    missing = [key for key in _REQUIRED if key not in data]
    if missing:
        raise SerializationError(
            f"{file}: missing required keys {missing}; a manifest needs {list(_REQUIRED)}."
        )
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, kinds[key]):
            raise SerializationError(
                f"{file}: {key}: expected {_type_names(kinds[key])}, got {short_repr(value)}."
            )
    calibration = check_calibration(data.get("calibration", {}), file)
    check_defaults(data.get("defaults", {}), calibration, file)
    if INTEGRITY in data:
        check_integrity_section(data[INTEGRITY], file)


def check_calibration(values: Mapping[str, Any], file: Path) -> dict[str, float]:
    """The calibration percentiles as floats; each must be a finite number."""
    out = {}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise SerializationError(
                f"{file}: calibration[{key!r}]: expected a number, got {value!r}."
            )
        out[key] = float(value)
        if not math.isfinite(out[key]):
            raise SerializationError(
                f"{file}: calibration[{key!r}]: expected a finite number, got {value!r}."
            )
    return out


def check_defaults(
    defaults: Mapping[str, Any], calibration: Mapping[str, float], file: Path
) -> None:
    """The default dream settings must be valid :class:`DreamSettings` (a ``halt`` named as a
    calibration key stands for its value)."""
    values = dict(defaults)
    if isinstance(values.get("halt"), str):
        if values["halt"] not in calibration:
            raise SerializationError(
                f"{file}: defaults.halt: expected a number or one of the calibrated percentiles "
                f"{sorted(calibration)}, got {values['halt']!r}."
            )
        values["halt"] = calibration[values["halt"]]
    try:
        DreamSettings.from_dict(values)
    except (ConfigError, TypeError) as exc:
        raise SerializationError(f"{file}: defaults: {exc}") from None


def check_integrity_section(section: Mapping[str, Any], file: Path) -> None:
    """The integrity section's structure: ``{"algorithm": "sha256", "manifest": HEX,
    "files": {relative path: {"bytes": int, "sha256": HEX}}}``."""
    where = f"{file}: {INTEGRITY}"
    if set(section) != {"algorithm", "manifest", "files"}:
        raise SerializationError(
            f"{where}: expected keys ['algorithm', 'files', 'manifest'], got {sorted(section)}."
        )
    if section["algorithm"] != HASH_ALGORITHM:
        raise SerializationError(
            f"{where}.algorithm: expected {HASH_ALGORITHM!r}, got {section['algorithm']!r}."
        )
    if not _is_digest(section["manifest"]):
        raise SerializationError(
            f"{where}.manifest: expected a sha256 hex digest, got {section['manifest']!r}."
        )
    files = section["files"]
    if not isinstance(files, dict):
        raise SerializationError(f"{where}.files: expected an object, got {short_repr(files)}.")
    for name, record in files.items():
        _check_file_record(name, record, where)


def _is_digest(value: Any) -> bool:
    return isinstance(value, str) and _HEX_DIGEST.fullmatch(value) is not None


def _check_file_record(name: str, record: Any, where: str) -> None:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or "\\" in name or str(path) in ("", MANIFEST):
        raise SerializationError(
            f"{where}.files: {name!r} is not a relative file path inside the artifact."
        )
    ok = (
        isinstance(record, dict)
        and set(record) == {"bytes", "sha256"}
        and isinstance(record["bytes"], int)
        and not isinstance(record["bytes"], bool)
        and record["bytes"] >= 0
        and _is_digest(record["sha256"])
    )
    if not ok:
        raise SerializationError(
            f"{where}.files[{name!r}]: expected {{'bytes': size, 'sha256': hex digest}}, "
            f"got {short_repr(record)}."
        )


# -- hashes ----------------------------------------------------------------------------------------
def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """Hex sha256 of the manifest's content without its integrity section, as canonical JSON
    (sorted keys, no whitespace): independent of the file's formatting."""
    content = {k: v for k, v in manifest.items() if k != INTEGRITY}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_table(folder: Path) -> dict[str, dict[str, Any]]:
    """``{relative path: {"bytes": size, "sha256": digest}}`` of every file under ``folder``
    but the manifest and hidden files (a name starting with ``.``, e.g. an unfinished atomic
    write), in sorted order."""
    table = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if not path.is_file() or any(part.startswith(".") for part in relative.parts):
            continue
        if relative.as_posix() == MANIFEST:
            continue
        table[relative.as_posix()] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    return table


def integrity_section(folder: Path, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The integrity section for ``manifest`` (its other keys) and the files now in ``folder``."""
    return {
        "algorithm": HASH_ALGORITHM,
        "manifest": manifest_digest(manifest),
        "files": file_table(folder),
    }


def sealed(folder: Path, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """``manifest`` (as it reads back from JSON) with a fresh integrity section for the files
    now in ``folder``, last."""
    content = json.loads(json.dumps({k: v for k, v in manifest.items() if k != INTEGRITY}))
    return {**content, INTEGRITY: integrity_section(folder, content)}


def manifest_text(manifest: Mapping[str, Any]) -> str:
    """The manifest as written to ``manifest.json``."""
    return json.dumps(manifest, indent=2) + "\n"


def required_files(manifest: Mapping[str, Any]) -> list[str]:
    """The files of an artifact that the loader reads, relative to its folder."""
    graphs = list(ONNX_FILES.values()) if "onnx" in manifest else []
    return [RESET_STATES, *MODEL_FILES, *graphs]


def verify_integrity(folder: Path, manifest: Mapping[str, Any]) -> None:
    """Check the manifest's content digest and every listed file (size, then sha256); warn
    (:class:`UnverifiedArtifactWarning`) when the manifest has no integrity section."""
    file = folder / MANIFEST
    section = manifest.get(INTEGRITY)
    fix = (
        f"Restore the file, or {REBUILD}; if the change is intended, re-hash it: "
        f"`{REHASH_COMMAND} {folder}`."
    )
    if section is None:
        warnings.warn(
            f"{file}: records no file hashes (written before worldflux recorded them), so the "
            f"artifact's files cannot be checked for corruption. Once it is known to be good, "
            f"record them: `{REHASH_COMMAND} {folder}` (or re-export it with `worldflux export`).",
            UnverifiedArtifactWarning,
            stacklevel=3,
        )
        return
    found = manifest_digest(manifest)
    if found != section["manifest"]:
        raise SerializationError(
            f"{file}: content does not match its recorded sha256 ({INTEGRITY}.manifest): "
            f"expected {section['manifest']}, found {found}; it was edited or is corrupt. {fix}"
        )
    files: Mapping[str, Mapping[str, Any]] = section["files"]
    unlisted = [name for name in required_files(manifest) if name not in files]
    if unlisted:
        raise SerializationError(
            f"{file}: {INTEGRITY}.files lists no hash for {unlisted}, which the loader reads. {fix}"
        )
    for name, record in files.items():
        _verify_file(folder / name, record, fix)


def _verify_file(path: Path, record: Mapping[str, Any], fix: str) -> None:
    if not path.is_file():
        raise SerializationError(f"{path}: missing; the manifest lists it. {fix}")
    size = path.stat().st_size
    if size != record["bytes"]:
        raise SerializationError(
            f"{path}: expected {record['bytes']} bytes (manifest), found {size}: truncated or "
            f"replaced. {fix}"
        )
    found = sha256_file(path)
    if found != record["sha256"]:
        raise SerializationError(
            f"{path}: sha256 mismatch: the manifest expects {record['sha256']}, found {found}; "
            f"the file is corrupt or was replaced. {fix}"
        )


# -- reset states ----------------------------------------------------------------------------------
def load_reset_states(path: Path, obs_shape: tuple[int, ...]) -> ResetStates:
    """Read ``reset_states.npz`` (never unpickling) and check its ``start`` and ``any`` arrays:
    non-empty ``[M, *obs_shape]`` arrays of real numbers, finite where floating point."""
    dims = "".join(f", {d}" for d in obs_shape)
    expected = f"a .npz file with arrays 'start' [M{dims}] and 'any' [K{dims}]"
    if not path.is_file():
        raise SerializationError(f"{path}: missing; expected {expected}.")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise SerializationError(f"{path}: unreadable ({exc}); expected {expected}.") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise SerializationError(f"{path}: holds a single array; expected {expected}.")
    with loaded:
        names = sorted(loaded.files)
        if "start" not in names or "any" not in names:
            raise SerializationError(f"{path}: has arrays {names}; expected {expected}.")
        arrays = {name: _read_member(loaded, name, path, expected) for name in ("start", "any")}
    for name, array in arrays.items():
        _check_observations(array, f"{path}: array {name!r}", obs_shape)
    return ResetStates(start=arrays["start"], any=arrays["any"])


def _read_member(npz: Any, name: str, path: Path, expected: str) -> np.ndarray:
    try:
        array: np.ndarray = npz[name]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise SerializationError(
            f"{path}: array {name!r} is unreadable ({exc}); expected {expected}."
        ) from None
    return array


def _check_observations(array: np.ndarray, what: str, obs_shape: tuple[int, ...]) -> None:
    if array.ndim != len(obs_shape) + 1 or array.shape[1:] != obs_shape or len(array) == 0:
        expected = ["M >= 1", *obs_shape]
        raise SerializationError(
            f"{what}: expected shape [{', '.join(map(str, expected))}], got {list(array.shape)}."
        )
    if array.dtype.kind not in "fiu":
        raise SerializationError(f"{what}: expected real numbers, got dtype {array.dtype}.")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise SerializationError(f"{what}: holds non-finite values (NaN or infinity).")
