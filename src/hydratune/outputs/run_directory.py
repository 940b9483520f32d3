"""One run per directory: a run never writes into another run's outputs.

Hydra creates the run directory and writes `.hydra/` and the job's log into it before
any stage runs; anything else found there belongs to an earlier run. Such a directory
is used only to resume it (`train.resume`), or after `run.overwrite=true` clears it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from hydratune.config.problems import ConfigError, Problem
from hydratune.config.spec import RunSpec

HYDRA_OWN = (".hydra",)


def earlier_contents(directory: Path) -> list[Path]:
    """What an earlier run left in `directory` (Hydra's own files for this command excluded)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.name not in HYDRA_OWN and p.suffix != ".log")


def claim_run_directory(spec: RunSpec) -> None:
    """Refuse a directory holding an earlier run unless resuming it; clear it with run.overwrite=true."""
    directory = spec.output_dir
    found = earlier_contents(directory)
    if not found:
        return
    if spec.run.overwrite:
        for path in found:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        return
    if spec.train.resume:
        (directory / "run.json").unlink(missing_ok=True)  # the record of a finish this run goes past; rewritten at its end
        return
    names = ", ".join(p.name for p in found[:6]) + (", ..." if len(found) > 6 else "")
    raise ConfigError([Problem("hydra.run.dir", f"{directory} already holds a run ({names})",
                               "resume it with train.resume=auto, clear it with run.overwrite=true, or pick a new hydra.run.dir")])
