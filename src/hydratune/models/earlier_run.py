"""A model that is an earlier hydratune run: `model.name=<run dir>` (or its merged/ or adapter/).

The model loaded is that run's merged/ (base plus its adapter, or its full weights).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from hydratune.run_layout import RunDirectory


def earlier_run_dir(model_name: str) -> Optional[Path]:
    """The run directory `model.name` points into, or None when it names no hydratune run."""
    path = Path(model_name).expanduser()
    for candidate in (path, path.parent):
        layout = RunDirectory(candidate)
        if layout.is_run() and path in (candidate, layout.merged, layout.adapter):
            return candidate.resolve()
    return None


def earlier_run_model(run_dir: Path) -> Path:
    """The model an earlier run left: its merged/."""
    merged = RunDirectory(run_dir).merged
    if not (merged / "config.json").is_file():
        raise FileNotFoundError(
            f"model.name={run_dir}: this run has no merged/ model yet (did it finish?); "
            "train it to the end, or export it with hydratune-export"
        )
    return merged
