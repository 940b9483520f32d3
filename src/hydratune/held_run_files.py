"""What a command would write into its run directory before it knows it may: held until it does.

Hydra writes `.hydra/` (the composed config, its own config, the overrides) and the job's log
into the run directory before any hydratune code runs. A command that then refuses the
directory (it holds an earlier run, or files that are not a run's) would already have
changed it. So hydratune turns those writes off (`hydra.output_subdir: null`, a console-only
`hydra/job_logging`) and holds them here: the config files as text, the log lines in memory.
`write_held(directory)` writes both once the directory is the command's; a refused command
never calls it, and what it held is dropped.
"""

from __future__ import annotations

import logging
from pathlib import Path

# A log held longer than this (a stage that runs long before claiming) keeps its newest lines.
MAX_HELD_RECORDS = 20_000


class HeldLog(logging.Handler):
    """A handler that keeps records until it is given its file, then writes them and every later one there."""

    def __init__(self, formatter: logging.Formatter):
        super().__init__()
        self.setFormatter(formatter)
        self.held: list[logging.LogRecord] = []
        self.file: logging.FileHandler | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.file is not None:
            self.file.emit(record)
            return
        self.held.append(record)
        if len(self.held) > MAX_HELD_RECORDS:
            del self.held[: len(self.held) - MAX_HELD_RECORDS]

    def open(self, path: Path) -> None:
        self.file = logging.FileHandler(path, encoding="utf-8")
        self.file.setFormatter(self.formatter)
        for record in self.held:
            self.file.emit(record)
        self.held = []

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        self.held = []
        super().close()


class _Held:
    files: dict[str, str] = {}
    log: HeldLog | None = None
    log_name: str = ""


def hold(files: dict[str, str], log_name: str) -> None:
    """Hold `files` (relative path -> text) and the root logger's lines from now on, for `log_name`."""
    release()
    _Held.files = dict(files)
    _Held.log_name = log_name
    _Held.log = HeldLog(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    logging.getLogger().addHandler(_Held.log)


def write_held(directory: Path) -> None:
    """The directory is this command's: write what was held into it, and log there from now on."""
    for relative, text in _Held.files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    _Held.files = {}
    if _Held.log is not None and _Held.log.file is None:
        directory.mkdir(parents=True, exist_ok=True)
        _Held.log.open(directory / _Held.log_name)


def release() -> None:
    """End of the command (or of a sweep's job): stop holding; what was never written is dropped."""
    if _Held.log is not None:
        logging.getLogger().removeHandler(_Held.log)
        _Held.log.close()
    _Held.files, _Held.log = {}, None
