"""Checkpoints that resume picks up only when whole, and only for the run that wrote them.

The HF Trainer writes a checkpoint as many files from every rank. Before it starts,
an old completion marker in that folder is removed (a rerun must not inherit it);
after it is done (all ranks past a barrier), rank 0 writes the marker with the run's
identity (its spec apart from the step budget, and its data cache key), then prunes:
only complete checkpoints count towards `train.save_total_limit`, and only once the
new one is marked, so a crash at any moment leaves at least one complete checkpoint.
`train.resume=auto` takes the newest complete checkpoint of this run and refuses, with
the choices, when there are checkpoints but none is complete or they belong elsewhere, and
when the run finished and the step budget was not raised. The decision comes before the
run writes anything, so a refused resume leaves the directory as it was.
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

from hydratune.config.problems import ConfigError, Problem, raise_if_any
from hydratune.config.spec import RunSpec
from hydratune.run_layout import RunDirectory
from hydratune.url_credentials import without_credentials

log = logging.getLogger(__name__)

COMPLETE_MARKER = "hydratune-complete.json"
_STEP = re.compile(r"^checkpoint-(\d+)$")
# Keys that may change between a run and its resumption: the step budget, and where and how it runs.
_RESUMABLE_CHANGES = ("train.max_steps", "train.epochs", "train.resume", "run.")


def run_identity(spec: RunSpec, data_key: str | None) -> dict[str, Any]:
    """What a checkpoint must share with the run that resumes it, as flat `key: value` pairs
    (without the data's key when it is not known yet). URL settings come without their credentials:
    every checkpoint's marker holds this, a refused resume prints it, and a rotated token is the same run."""
    spec_part = _flatten_spec(without_credentials(dataclasses.asdict(spec)))
    return spec_part if data_key is None else {**spec_part, "data.cache_key": data_key}


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


def resolve_resume(spec: RunSpec, data_key: str | None, *, finished_ok: bool = False) -> str | None:
    """The checkpoint `train.resume` continues from (None: start at step 0), or ConfigError naming
    everything that stands in the way and the way out. Decided before the run writes anything.
    `data_key` None (a dry run, before the data is prepared) checks everything but the data.
    `finished_ok`: a run finished at this step budget is not refused (a resumed sweep skips it),
    though one of another config still is."""
    resume = spec.train.resume
    if not resume:
        return None
    current = run_identity(spec, data_key)
    if resume != "auto":
        folder = Path(resume)
        raise_if_any(_checkpoint_problems(folder, spec, current, f"train.resume={resume}"))
        return str(folder)
    layout = RunDirectory(spec.output_dir)
    complete = complete_checkpoints(checkpoints_dir(spec))
    problems = _checkpoint_problems(complete[-1], spec, current, "train.resume=auto") if complete else []
    if not complete and checkpoint_folders(checkpoints_dir(spec)):
        problems.append(
            Problem(
                "train.resume=auto",
                f"{checkpoints_dir(spec)} holds checkpoints but none is complete (a crash during its save)",
                f"{START_OVER}; or pick one with train.resume=<path> after checking it",
            )
        )
    elif not complete and layout.spec.is_file():  # stopped before its first checkpoint: it starts over, if the same run
        differences = _differences(
            _flatten_spec(json.loads(layout.spec.read_text())),
            {k: v for k, v in current.items() if k != "data.cache_key"},
        )
        if differences:
            problems.append(
                Problem(
                    "train.resume=auto",
                    f"{layout.root} holds another run: " + "; ".join(differences[:8]),
                    f"fix the config to match it, or {START_OVER}",
                )
            )
    if not (finished_ok and finished_at_budget(spec)):
        problems += _finished_problems(spec, layout, has_checkpoint=bool(complete))
    raise_if_any(problems)
    if not complete and layout.spec.is_file():
        log.info("%s has no checkpoint yet: the run starts over at step 0", layout.root)
    return str(complete[-1]) if complete else None


START_OVER = "start over in a new hydra.run.dir, or clear this one with run.overwrite=true"


def finished_at_budget(spec: RunSpec) -> bool:
    """Whether the run in spec's directory finished and spec asks for no more steps than it was given."""
    layout = RunDirectory(spec.output_dir)
    return layout.finished() and not _budget_raised(spec, json.loads(layout.record.read_text()))


def _budget_raised(spec: RunSpec, record: dict[str, Any]) -> bool:
    before = record.get("spec", {}).get("train", {})
    return (spec.train.max_steps or 0) > (before.get("max_steps") or 0) or (
        spec.train.max_steps is None and before.get("max_steps") is None and spec.train.epochs > before.get("epochs", 0)
    )


def _finished_problems(spec: RunSpec, layout: RunDirectory, *, has_checkpoint: bool) -> list[Problem]:
    """A finished run is continued only to a larger step budget, and only from a checkpoint."""
    if not layout.finished():
        return []
    record = json.loads(layout.record.read_text())
    step = record.get("metrics", {}).get("global_step")
    if not _budget_raised(spec, record):
        return [
            Problem(
                "train.resume=auto",
                f"{layout.root} already finished at step {step}",
                "raise train.max_steps to continue it, or pick a new hydra.run.dir",
            )
        ]
    if not has_checkpoint:
        return [
            Problem(
                "train.resume=auto",
                f"{layout.root} finished at step {step} and kept no checkpoint to continue from "
                "(train.save_steps was null)",
                "pick a new hydra.run.dir; set train.save_steps to keep checkpoints a later run can continue from",
            )
        ]
    return []


def _checkpoint_problems(folder: Path, spec: RunSpec, current: dict[str, Any], key: str) -> list[Problem]:
    """Why `folder` is not a complete checkpoint of this run with steps left to train (none when it is)."""
    if not (folder / COMPLETE_MARKER).is_file():
        return [
            Problem(
                key,
                f"{folder} is not a complete hydratune checkpoint (no {COMPLETE_MARKER})",
                "pick a checkpoint-N folder that has one, or train.resume=auto",
            )
        ]
    marker = read_marker(folder)
    saved = marker.get("identity", {})
    if "data.cache_key" not in current:  # checked once the data is prepared
        saved = {k: v for k, v in saved.items() if k != "data.cache_key"}
    problems = []
    differences = _differences(saved, current)
    if differences:
        problems.append(
            Problem(
                key,
                f"{folder} belongs to another run: " + "; ".join(differences[:8]),
                f"fix the config to match it, {START_OVER}",
            )
        )
    step = marker.get("global_step", step_of(folder))
    # At the budget exactly, a run whose training ended but whose export or evaluation failed is finished.
    if spec.train.max_steps is not None and step > spec.train.max_steps:
        problems.append(
            Problem(
                key,
                f"{folder} is at step {step}, past train.max_steps={spec.train.max_steps}",
                f"set train.max_steps above {step} to continue it, or pick a new hydra.run.dir",
            )
        )
    return problems


def _flatten_spec(saved: dict[str, Any]) -> dict[str, Any]:
    """A spec.json's content as `run_identity` lists it (the step budget and run section left out)."""
    return {k: v for k, v in _flatten(saved).items() if not k.startswith(_RESUMABLE_CHANGES)}


def _differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    keys = sorted(set(saved) | set(current))
    return [f"{k}={saved.get(k)!r} there, {current.get(k)!r} here" for k in keys if saved.get(k) != current.get(k)]


def checkpoints_dir(spec: RunSpec) -> Path:
    return RunDirectory(spec.output_dir).checkpoints


def decide_on_rank_zero(decide):
    """Run `decide()` on rank 0 and give every rank its result (or its ConfigError): ranks never choose differently."""
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
