"""One run per directory, and nothing hydratune did not write is ever touched.

`train` decides what it may do with its run directory before it writes anything there, holding
the directory's lock (run_lock.py) from before it looks until the run ends:
- a directory another live command holds is refused, whatever the command asks;
- an empty or new directory is the run's, and so is one holding only what a dry run or
  `preprocess` left (Hydra's config, a plan, their logs): the run replaces it;
- a directory holding an earlier run is refused, unless the command resumes it
  (`train.resume`, decided in training/checkpoints.py) or clears it (`run.overwrite=true`);
- `run.overwrite=true` clears only the entries a run writes (run_layout.py), and is refused
  where the directory holds anything else, or is the working directory, one of its parents
  or the home directory;
- a directory holding files that are not a run's is never the run's, resumed or not: pick another.
Hydra's own writes are held until then (held_run_files.py), so a refused command, and a dry
run into a directory that holds something, leave every file as it was.
"""

from __future__ import annotations

import json
import logging
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

from hydratune.config.problems import ConfigError, Problem
from hydratune.config.spec import RunSpec
from hydratune.run_layout import RunDirectory, written_by_a_run
from hydratune.run_lock import DirectoryInUse, RunLock, lock_run_directory

log = logging.getLogger(__name__)

SHOWN = 6  # entries named in a refusal

# What commands leave in a directory before a run starts training there: Hydra's config, a dry
# run's plan and spec, the commands' logs, the status of a sweep job that failed before it started.
_BEFORE_A_RUN = frozenset(
    {".hydra", "plan.json", "spec.json", "job_status.json", *(p.name for p in RunDirectory(Path()).logs)}
)


class RunDirectoryRefused(ConfigError):
    """The run may not use its directory (held by a live run, an earlier run's, the user's): nothing
    was written there, so a sweep keeps the status the directory's earlier job recorded."""


@dataclass(frozen=True)
class Claim:
    """What the command may do with its run directory: start in it, clear it first, or resume the run in it.
    `found`: what `clear` removes, and what `new` replaces (a dry run's or preprocess's files)."""

    kind: Literal["new", "clear", "resume"]
    directory: Path
    found: tuple[Path, ...] = ()
    lock: RunLock | None = None

    def describe(self) -> str:
        if self.kind == "clear":
            return f"clears {_names(self.found)} in {self.directory}"
        if self.kind == "resume":
            return f"resumes the run in {self.directory}"
        if self.found:
            return f"starts in {self.directory}, replacing what a dry run or preprocess left ({_names(self.found)})"
        return f"starts in {self.directory}"

    def release(self) -> None:
        """The run is over (or refused): other commands may use the directory."""
        if self.lock is not None:
            self.lock.release()


def _names(paths) -> str:
    paths = list(paths)
    shown = ", ".join(p.name + ("/" if p.is_dir() else "") for p in paths[:SHOWN])
    return shown + (f", ... ({len(paths)} in all)" if len(paths) > SHOWN else "")


def claim_run_directory(spec: RunSpec) -> Claim:
    """Lock the run's directory and decide, without writing, what this run may do with it;
    RunDirectoryRefused when it may not (the lock is then let go)."""
    directory = spec.output_dir
    try:
        lock = lock_run_directory(directory)
    except DirectoryInUse as busy:
        raise RunDirectoryRefused(
            [
                Problem(
                    "hydra.run.dir",
                    f"{directory} is in use by {busy.holder}, which hydratune never clears, resumes or joins",
                    "pick a new hydra.run.dir, or wait for that run to end and run this command again",
                )
            ]
        ) from None
    try:
        kind, found = _decide(spec, directory)
    except ConfigError as error:
        lock.release()
        raise RunDirectoryRefused(error.problems) from None
    return Claim(kind, directory, found, lock)


def _decide(spec: RunSpec, directory: Path) -> tuple[str, tuple[Path, ...]]:
    layout = RunDirectory(directory)
    found = sorted(p for p in directory.iterdir() if p != layout.run_lock)
    theirs = [p for p in found if not written_by_a_run(p.name)]
    ours = tuple(p for p in found if written_by_a_run(p.name))
    if not found:
        return "new", ()
    if spec.run.overwrite:
        _check_clearable(directory, theirs)
        return "clear", ours
    if theirs:
        raise ConfigError([_not_a_runs(layout, theirs)])
    if not _run_started(layout, ours):
        return "new", ours
    if spec.train.resume and layout.is_run():  # decided on the checkpoints in training/checkpoints.py
        return "resume", ours
    if spec.train.resume:
        raise ConfigError(
            [
                Problem(
                    f"train.resume={spec.train.resume}",
                    f"{directory} holds no hydratune run to resume (no {layout.spec.name}), but {_names(ours)}",
                    "pick a new hydra.run.dir, or clear those with run.overwrite=true if an earlier run left them",
                )
            ]
        )
    state = "a finished run" if layout.finished() else "an earlier run"
    raise ConfigError(
        [
            Problem(
                "hydra.run.dir",
                f"{directory} already holds {state} ({_names(ours)})",
                "resume it with train.resume=auto, clear it with run.overwrite=true, or pick a new hydra.run.dir",
            )
        ]
    )


def _not_a_runs(layout: RunDirectory, theirs: list[Path]) -> Problem:
    if layout.is_run():  # a run with the user's files beside it: resuming it would mix them
        return Problem(
            "hydra.run.dir",
            f"{layout.root} holds files hydratune did not write ({_names(theirs)}) beside its run",
            "move those files away, then run this again; or pick a new hydra.run.dir",
        )
    return Problem(
        "hydra.run.dir",
        f"{layout.root} holds files that are not a hydratune run's ({_names(theirs)})",
        "pick a new or empty hydra.run.dir (e.g. outputs/runs/<name>)",
    )


def _run_started(layout: RunDirectory, ours: tuple[Path, ...]) -> bool:
    """Whether a run (not a dry run, not preprocess) wrote into the directory: something beyond what
    commands leave before a run, or a spec.json that is not a dry run's."""
    if any(p.name not in _BEFORE_A_RUN for p in ours):
        return True
    if not layout.spec.is_file():
        return False
    try:
        return json.loads(layout.spec.read_text())["run"]["dry_run"] is not True
    except (OSError, ValueError, KeyError, TypeError):
        return True  # unreadable: taken for a run's, so nothing is replaced


@contextmanager
def held_if_empty(directory: Path) -> Iterator[bool]:
    """For a command that writes only its config and log there (preprocess): yields whether the directory
    is new or empty, holding it meanwhile when it is. Never refused: the command's work is elsewhere."""
    try:
        lock = lock_run_directory(directory)
    except DirectoryInUse:
        lock = None
    if lock is not None and any(p != lock.path for p in directory.iterdir()):
        lock.release()
        lock = None
    if lock is None:
        yield False
        return
    lock.keep()
    try:
        yield True
    finally:
        lock.release()


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
    """Act on an accepted claim: clear the earlier run (`clear`) or what a dry run left (`new`), or
    drop the record of the finish a resumed run goes past (`resume`; its new run.json is written at its end)."""
    if claim.lock is not None:
        claim.lock.keep()
    if claim.kind in ("clear", "new") and claim.found:
        log.info("clearing %s in %s", _names(claim.found), claim.directory)
        for path in claim.found:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    elif claim.kind == "resume":
        RunDirectory(claim.directory).record.unlink(missing_ok=True)
