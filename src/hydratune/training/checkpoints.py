"""Checkpoints that resume picks up only when whole.

The HF Trainer writes a checkpoint as many files from every rank. After it is done
(all ranks past a barrier), rank 0 writes a completion marker; `resume=auto` takes
the newest checkpoint that has one, so a crash mid-save is never resumed from.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from transformers import TrainerCallback

COMPLETE_MARKER = "hydratune-complete.json"
_STEP = re.compile(r"^checkpoint-(\d+)$")


class MarkCompleteCheckpoints(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            tmp = folder / (COMPLETE_MARKER + ".tmp")
            tmp.write_text(json.dumps({"global_step": state.global_step}))
            tmp.replace(folder / COMPLETE_MARKER)
        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # no rank races ahead and crashes before the marker exists
        return control


def complete_checkpoints(directory: Path) -> list[Path]:
    """Whole checkpoints in `directory`, oldest first."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _STEP.match(p.name)) and (p / COMPLETE_MARKER).is_file()]
    return [p for _, p in sorted(found)]


def resolve_resume(resume: str | None, checkpoints: Path) -> str | None:
    """The checkpoint to resume from: `auto` -> newest complete one (None if there is none)."""
    if not resume:
        return None
    if resume == "auto":
        done = complete_checkpoints(checkpoints)
        return str(done[-1]) if done else None
    path = Path(resume)
    if not (path / COMPLETE_MARKER).is_file():
        raise FileNotFoundError(f"train.resume={resume}: not a complete hydratune checkpoint (no {COMPLETE_MARKER})")
    return str(path)
