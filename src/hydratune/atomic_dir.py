"""Directories that appear whole or not at all.

A builder writes into a temporary sibling, writes its manifest last, then renames
the sibling into place: a reader that finds the manifest knows the work completed,
and a process killed half-way leaves only a temporary folder that nobody reads.
A file lock beside the target makes concurrent builders build once; the others
wait and then read.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from filelock import FileLock

MANIFEST = "manifest.json"


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The manifest of a complete directory, or None when it is absent or unreadable."""
    try:
        return json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def build_once(
    target: Path, build: Callable[[Path], dict[str, Any]], *, is_valid: Callable[[Path, dict], bool] | None = None
) -> tuple[Path, bool]:
    """Return (target, built_now). `build(tmp_dir)` fills tmp_dir and returns the manifest.

    An existing target with a readable manifest (and passing `is_valid`) is reused;
    anything else found there is a leftover of a broken build and is replaced.
    """
    target.parent.mkdir(parents=True, exist_ok=True)

    def complete() -> bool:
        manifest = read_manifest(target)
        return manifest is not None and (is_valid is None or is_valid(target, manifest))

    if complete():
        return target, False
    with FileLock(str(target) + ".lock"):
        if complete():  # another process built it while we waited
            return target, False
        for leftover in target.parent.glob(f".{target.name}.tmp-*"):  # scratch of a killed build: we hold the lock
            shutil.rmtree(leftover, ignore_errors=True)
        with _scratch(target) as tmp:
            manifest = build(tmp)
            write_json_atomic(tmp / MANIFEST, manifest)
            if target.exists():
                shutil.rmtree(target)  # incomplete or corrupted: never read, rebuilt
            os.replace(tmp, target)
    return target, True


@contextmanager
def _scratch(target: Path) -> Iterator[Path]:
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        yield tmp
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str))
    os.replace(tmp, path)
