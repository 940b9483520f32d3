"""The lock a command holds on its run directory for as long as it works there.

Two commands started into one directory in the same instant would both find it new if the
claim were a look at what it holds: the claim is an exclusive `flock` on a file in the
directory, taken before the look and held until the run ends (or its process dies, when the
kernel drops it: a killed run leaves no lock that outlives it). Ranks a run starts (torchrun's
children) do not take it: their parent holds it while they run.

The file is removed when the lock is let go, by the command that created it or that went on to
use the directory; one that is refused leaves the directory as it was. Since a path can be
removed while another process waits for its lock, a lock is only held once the locked file is
still the one at the path.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from hydratune.run_layout import RunDirectory


class DirectoryInUse(Exception):
    """Another live process holds the directory's lock; `holder` says who, when it said."""

    def __init__(self, directory: Path, holder: str):
        super().__init__(f"{directory} is in use by {holder}")
        self.directory, self.holder = directory, holder


@dataclass
class RunLock:
    directory: Path
    fd: int
    created_file: bool  # this process made the lock file (and so removes it, refused or not)
    kept: bool = False  # the directory is this run's: the lock file goes when the run ends

    @property
    def path(self) -> Path:
        return RunDirectory(self.directory).run_lock

    def keep(self) -> None:
        """The directory is this run's: its lock file goes when the run ends."""
        self.kept = True

    def release(self) -> None:
        """Let the directory go: remove the lock file where this process made it or used the directory."""
        if self.fd < 0:
            return
        if self.created_file or self.kept:
            self.path.unlink(missing_ok=True)  # still locked: a waiting process sees the file is gone
        os.close(self.fd)
        self.fd = -1


def lock_run_directory(directory: Path) -> RunLock:
    """Take `directory`'s lock (creating the directory when missing); DirectoryInUse when a live
    process holds it."""
    directory.mkdir(parents=True, exist_ok=True)
    path = RunDirectory(directory).run_lock
    while True:
        try:
            fd, created = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
        except FileExistsError:
            try:
                fd, created = os.open(path, os.O_RDWR), False
            except FileNotFoundError:  # let go between the two opens: try again
                continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = _holder(fd)
            os.close(fd)
            if error.errno in (errno.EAGAIN, errno.EACCES):
                raise DirectoryInUse(directory, holder) from None
            raise
        if _same_file(fd, path):
            # who holds it, for a command refused meanwhile
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
            return RunLock(directory, fd, created)
        os.close(fd)  # removed by the holder we waited on: the lock is the new file's


def _same_file(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _holder(fd: int) -> str:
    try:
        said = os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        said = ""
    return f"a live run ({said})" if said else "a live run"
