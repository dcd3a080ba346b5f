"""``python -m worldflux.export {rehash,verify} FOLDER...``: record (:func:`~worldflux.export.
artifact.rehash_artifact`) or check (:func:`~worldflux.export.artifact.verify_artifact`) the file
hashes of artifact folders."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.errors import WorldFluxError
from ..dream.manifest import MANIFEST, UnverifiedArtifactWarning
from .artifact import rehash_artifact, verify_artifact


def main(argv: list[str] | None = None) -> int:
    """``python -m worldflux.export {rehash,verify} FOLDER...``."""
    parser = argparse.ArgumentParser(
        prog="python -m worldflux.export",
        description="Record (rehash) or check (verify) the file hashes of artifact folders.",
    )
    parser.add_argument("command", choices=("rehash", "verify"))
    parser.add_argument("folders", nargs="+", type=Path, metavar="FOLDER")
    args = parser.parse_args(argv)
    status = 0
    for folder in args.folders:
        try:
            if args.command == "rehash":
                files = rehash_artifact(folder)["files"]
                print(f"{folder}: recorded the sha256 of {len(files)} files in {MANIFEST}")
            else:
                verify_artifact(folder)
                print(f"{folder}: ok")
        except (WorldFluxError, UnverifiedArtifactWarning) as exc:
            print(f"{folder}: {exc}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
