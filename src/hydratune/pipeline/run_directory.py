"""One run per directory, and nothing hydratune did not write is ever touched.

`train` decides what it may do with its run directory before it writes anything there:
- an empty or new directory is the run's;
- a directory holding an earlier run is refused, unless the command resumes it
  (`train.resume`, decided in training/checkpoints.py) or clears it (`run.overwrite=true`);
- `run.overwrite=true` clears only the entries a run writes (run_layout.py), and is refused
  where the directory holds anything else, or is the working directory, one of its parents
  or the home directory;
- a directory holding files that are not a run's is never the run's: pick another.
Hydra's own writes are held until then (held_run_files.py), so a refused command, and a dry
run into a directory that holds something, leave every file as it was.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hydratune.config.problems import ConfigError, Problem
from hydratune.config.spec import RunSpec
from hydratune.run_layout import RunDirectory, written_by_a_run

log = logging.getLogger(__name__)

SHOWN = 6  # entries named in a refusal


@dataclass(frozen=True)
class Claim:
    """What the command may do with its run directory: start in it, clear it first, or resume the run in it."""

    kind: Literal["new", "clear", "resume"]
    directory: Path
    found: tuple[Path, ...] = ()  # the earlier run's entries (what `clear` removes)

    def describe(self) -> str:
        if self.kind == "clear":
            return f"clears {_names(self.found)} in {self.directory}"
        if self.kind == "resume":
            return f"resumes the run in {self.directory}"
        return f"starts in {self.directory}"


def _names(paths) -> str:
    paths = list(paths)
    shown = ", ".join(p.name + ("/" if p.is_dir() else "") for p in paths[:SHOWN])
    return shown + (f", ... ({len(paths)} in all)" if len(paths) > SHOWN else "")


def claim_run_directory(spec: RunSpec) -> Claim:
    """Decide, without writing, what this run may do with its directory; ConfigError when it may not."""
    directory = spec.output_dir
    found = sorted(directory.iterdir()) if directory.is_dir() else []
    if not found:
        return Claim("new", directory)
    theirs = [p for p in found if not written_by_a_run(p.name)]
    ours = tuple(p for p in found if written_by_a_run(p.name))
    if spec.run.overwrite:
        _check_clearable(directory, theirs)
        return Claim("clear", directory, ours)
    if spec.train.resume:  # nothing is deleted: the user's files beside a run stay where they are
        return Claim("resume", directory, ours)
    if theirs:
        raise ConfigError(
            [
                Problem(
                    "hydra.run.dir",
                    f"{directory} holds files that are not a hydratune run's ({_names(theirs)})",
                    "pick a new or empty hydra.run.dir (e.g. outputs/runs/<name>)",
                )
            ]
        )
    state = "a finished run" if RunDirectory(directory).finished() else "an earlier run"
    raise ConfigError(
        [
            Problem(
                "hydra.run.dir",
                f"{directory} already holds {state} ({_names(ours)})",
                "resume it with train.resume=auto, clear it with run.overwrite=true, or pick a new hydra.run.dir",
            )
        ]
    )


def _check_clearable(directory: Path, theirs: list[Path]) -> None:
    cwd, home = Path.cwd().resolve(), Path.home().resolve()
    if directory == home or directory == cwd or cwd.is_relative_to(directory):
        what = (
            "the home directory"
            if directory == home
            else "the directory you run from"
            if directory == cwd
            else f"a parent of the directory you run from ({cwd})"
        )
        raise ConfigError(
            [
                Problem(
                    "run.overwrite=true",
                    f"hydra.run.dir={directory} is {what}, which hydratune never clears",
                    "pick a run directory of its own, e.g. hydra.run.dir=outputs/runs/<name>",
                )
            ]
        )
    if theirs:
        raise ConfigError(
            [
                Problem(
                    "run.overwrite=true",
                    f"{directory} holds files hydratune did not write ({_names(theirs)}), "
                    "and it clears only a run's own",
                    "move those files away, or pick a new hydra.run.dir",
                )
            ]
        )


def take_run_directory(claim: Claim) -> None:
    """Act on an accepted claim: clear the earlier run (`clear`), or drop the record of the finish a
    resumed run goes past (`resume`; its new run.json is written at its end)."""
    if claim.kind == "clear":
        log.info("clearing the earlier run in %s (%s)", claim.directory, _names(claim.found))
        for path in claim.found:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    elif claim.kind == "resume":
        RunDirectory(claim.directory).record.unlink(missing_ok=True)
