"""A full disk: how much is free where a run writes, and one message instead of a write's traceback.

A write that fails for want of space surfaces in several shapes: an OSError with errno ENOSPC
(or EDQUOT, a quota), safetensors' SafetensorError whose text carries "os error 28", torch.save's
RuntimeError "file write failed". `is_disk_full` recognizes them through the exception's chain;
`disk_full_exits` turns one into `DiskFullError` (exit 1) naming the path and the space left.
What was being written lies under a scratch name or without its completion marker, so no later
command reads it (atomic_dir.py, checkpoints.py).
"""

from __future__ import annotations

import errno
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from hydratune.errors import HydratuneError

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_FULL_TEXTS = ("no space left on device", "os error 28", "disk quota exceeded", "os error 122")
# torch.save's writer reports a failed write without its errno; it counts as a full disk only
# when the disk is (nearly) full afterwards.
_WRITE_FAILED_TEXTS = ("file write failed", "failed writing file")
NEARLY_FULL_BYTES = 1 << 20


class DiskFullError(HydratuneError):
    """A write failed because the disk holding `path` is full; the message says how to go on."""

    exit_code = 1

    def __init__(self, path: Path, needed: int | None = None, fix: str = ""):
        self.path, self.free, self.needed, self.fix = Path(path), free_bytes(path), needed, fix or "rerun the command"
        super().__init__(str(self.path))

    def describe(self) -> str:
        needs = f"; the run needs about {human_bytes(self.needed)} there" if self.needed else ""
        return (
            f"Error: no space left on device writing {self.path} ({human_bytes(self.free)} free{needs}); "
            f"what was being written is not kept. Free space there and {self.fix}"
        )


def free_bytes(path: Path) -> int:
    """Bytes free to this user on the filesystem that holds `path` (or would hold it, once created)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def human_bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def is_disk_full(error: BaseException, where: Path | None = None) -> bool:
    """Whether `error` (or an exception it was raised from) is a write that found the disk full."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _FULL_ERRNOS:
            return True
        text = str(error).lower()
        if any(t in text for t in _FULL_TEXTS):
            return True
        if where is not None and any(t in text for t in _WRITE_FAILED_TEXTS):
            return free_bytes(where) < NEARLY_FULL_BYTES
        error = error.__cause__ or error.__context__
    return False


def failed_path(error: BaseException, default: Path) -> Path:
    """The file the failed write named (an OSError's filename), else `default`."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        name = getattr(error, "filename", None)
        if isinstance(name, (str, os.PathLike)):
            return Path(name)
        error = error.__cause__ or error.__context__
    return Path(default)


@contextmanager
def disk_full_exits(path: Path, needed: int | None = None, *, name_file: bool = True, fix: str = "") -> Iterator[None]:
    """Inside: a write that finds the disk full raises DiskFullError naming the file it wrote (when the
    error names one and `name_file`) or `path`, and `fix` (after "free space there and")."""
    try:
        yield
    except DiskFullError as error:  # raised further in, naming its path: the way on is the caller's
        error.fix = fix or error.fix
        error.needed = needed or error.needed
        raise
    except HydratuneError:  # already one message (a failed rank's names the disk itself)
        raise
    except Exception as error:
        if not is_disk_full(error, path):
            raise
        where = failed_path(error, path) if name_file else path
        raise DiskFullError(where, needed, fix) from None
