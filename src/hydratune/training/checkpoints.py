"""Checkpoints that resume picks up only when whole, and only for the run that wrote them.

The HF Trainer writes a checkpoint as many files from every rank. Before it starts,
an old completion marker in that folder is removed (a rerun must not inherit it);
after it is done (all ranks past a barrier), rank 0 writes the marker with the run's
identity (its spec apart from the step budget, and its data cache key), then prunes:
only complete checkpoints count towards `train.save_total_limit`, and only once the
new one is marked, so a crash at any moment leaves at least one complete checkpoint.
`train.resume=auto` takes the newest complete checkpoint of this run and refuses, with
the choices, when there are checkpoints but none is complete or they belong elsewhere.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from hydratune.config.problems import ConfigError, Problem
from hydratune.config.spec import RunSpec

log = logging.getLogger(__name__)

COMPLETE_MARKER = "hydratune-complete.json"
_STEP = re.compile(r"^checkpoint-(\d+)$")
# Keys that may change between a run and its resumption: the step budget, and where and how it runs.
_RESUMABLE_CHANGES = ("train.max_steps", "train.epochs", "train.resume", "run.")


def run_identity(spec: RunSpec, data_key: str) -> dict[str, Any]:
    """What a checkpoint must share with the run that resumes it, as flat `key: value` pairs."""
    flat = _flatten(dataclasses.asdict(spec))
    spec_part = {k: v for k, v in flat.items() if not k.startswith(_RESUMABLE_CHANGES)}
    return {**spec_part, "data.cache_key": data_key}


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict) and data and not prefix.endswith(("config_overrides.", "fields.")):
        out = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): json.loads(json.dumps(data, default=str))}


def step_of(folder: Path) -> int | None:
    match = _STEP.match(folder.name)
    return int(match.group(1)) if match else None


def checkpoint_folders(directory: Path) -> list[Path]:
    """Every checkpoint-N folder, complete or not, oldest first."""
    if not directory.is_dir():
        return []
    return sorted((p for p in directory.iterdir() if step_of(p) is not None and p.is_dir()), key=step_of)


def complete_checkpoints(directory: Path) -> list[Path]:
    """Whole checkpoints in `directory`, oldest first."""
    return [p for p in checkpoint_folders(directory) if (p / COMPLETE_MARKER).is_file()]


def read_marker(folder: Path) -> dict[str, Any]:
    return json.loads((folder / COMPLETE_MARKER).read_text())


def prune_checkpoints(directory: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` complete checkpoints, and incomplete ones older than
    the newest complete one (leftovers of a crash). Returns what was deleted."""
    complete = complete_checkpoints(directory)
    if not complete:
        return []
    newest = step_of(complete[-1])
    doomed = complete[:-keep] + [p for p in checkpoint_folders(directory) if p not in complete and step_of(p) < newest]
    for folder in doomed:
        shutil.rmtree(folder, ignore_errors=True)
    return doomed


class MarkCompleteCheckpoints(TrainerCallback):
    def __init__(self, identity: dict[str, Any], keep: int):
        self.identity, self.keep = identity, keep

    def on_save(self, args, state, control, **kwargs):
        barrier()
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            tmp = folder / (COMPLETE_MARKER + ".tmp")
            tmp.write_text(json.dumps({"global_step": state.global_step, "identity": self.identity}))
            tmp.replace(folder / COMPLETE_MARKER)
            prune_checkpoints(Path(args.output_dir), self.keep)
        barrier()  # no rank races ahead and crashes before the marker exists
        return control


def clear_marker(folder: Path) -> None:
    """Before anything writes into a checkpoint folder: its old marker would vouch for a half-written save."""
    (folder / COMPLETE_MARKER).unlink(missing_ok=True)


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def resolve_resume(spec: RunSpec, data_key: str) -> str | None:
    """The checkpoint to resume from (None: start at step 0), or ConfigError with the choices."""
    resume = spec.train.resume
    if not resume:
        return None
    directory = checkpoints_dir(spec)
    if resume != "auto":
        path = Path(resume)
        if not (path / COMPLETE_MARKER).is_file():
            raise ConfigError([Problem(f"train.resume={resume}", f"not a complete hydratune checkpoint (no {COMPLETE_MARKER})",
                                       "pick a checkpoint-N folder that has one, or train.resume=auto")])
        differences = _differences(read_marker(path).get("identity", {}), run_identity(spec, data_key))
        if differences:
            log.warning("resuming from %s, which was made with other settings: %s", path, "; ".join(differences))
        return str(path)
    complete = complete_checkpoints(directory)
    start_over = "start over in a new directory, or clear this one with run.overwrite=true"
    if not complete:
        if checkpoint_folders(directory):
            raise ConfigError([Problem("train.resume=auto", f"{directory} holds checkpoints but none is complete (a crash during its save)",
                                       f"{start_over}; or pick one with train.resume=<path> after checking it")])
        return None
    newest = complete[-1]
    differences = _differences(read_marker(newest).get("identity", {}), run_identity(spec, data_key))
    if differences:
        raise ConfigError([Problem("train.resume=auto", f"{newest} belongs to another run: " + "; ".join(differences[:8]),
                                   f"fix the config to match it, {start_over}, or pick a checkpoint with train.resume=<path>")])
    return str(newest)


def _differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    keys = sorted(set(saved) | set(current))
    return [f"{k}={saved.get(k)!r} there, {current.get(k)!r} here" for k in keys if saved.get(k) != current.get(k)]


def checkpoints_dir(spec: RunSpec) -> Path:
    return spec.output_dir / "checkpoints"


def decide_on_rank_zero(decide):
    """Run `decide()` on rank 0 and give every rank its result (or its ConfigError), so ranks never choose differently."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return decide()
    box: list[Any] = [None]
    if dist.get_rank() == 0:
        try:
            box[0] = ("ok", decide())
        except ConfigError as error:
            box[0] = ("error", error.problems)
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        raise ConfigError(value)
    return value
