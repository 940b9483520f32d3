"""A run that starts from an earlier run: `model.name=<run dir>` (or its merged/ or adapter/).

The model loaded is the earlier run's merged/ (base plus its adapter, or its full weights);
run.json records that run as the parent, with the parent's own parent, so a chain such as
SFT -> DPO -> GRPO can be followed back to the first base model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from hydratune.outputs.run_record import RUN_FILE, SPEC_FILE


def parent_run_dir(model_name: str) -> Optional[Path]:
    """The run directory `model.name` points into, or None when it names no hydratune run."""
    path = Path(model_name).expanduser()
    for candidate in (path, path.parent):
        if (candidate / SPEC_FILE).is_file() and path in (candidate, candidate / "merged", candidate / "adapter"):
            return candidate.resolve()
    return None


def parent_model_dir(run_dir: Path) -> Path:
    merged = run_dir / "merged"
    if not (merged / "config.json").is_file():
        raise FileNotFoundError(f"model.name={run_dir}: this run has no merged/ model yet (did it finish?); "
                                "train it to the end, or export it with hydratune-export")
    return merged


def parent_record(model_name: str) -> Optional[dict[str, Any]]:
    """What run.json says about the run this one started from (None for a base model)."""
    run_dir = parent_run_dir(model_name)
    if run_dir is None:
        return None
    record = json.loads((run_dir / RUN_FILE).read_text()) if (run_dir / RUN_FILE).is_file() else {}
    spec = record.get("spec") or json.loads((run_dir / SPEC_FILE).read_text())
    return {
        "run_dir": str(run_dir),
        "model": spec["model"]["name"],
        "random_init": spec["model"].get("random_init", False),
        "revision": spec["model"].get("revision"),
        "method": spec["method"].get("name"),
        "weights": spec["method"].get("weights"),
        "objective": record.get("objective"),
        "parent": record.get("parent"),
    }
