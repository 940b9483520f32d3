"""The training loss a run records: the mean over all of its steps, resumed or not.

The Trainer's own `training_loss` averages the steps that one `train()` call ran. A resumed run's
call leaves out the steps before its checkpoint, and reads 0.0 where it ran none (a run resumed at
its step budget, e.g. killed during export): a sweep optimizing train_loss would take that 0.0 as
the best run. The steps before the checkpoint come back with the checkpoint's log history.
"""

from __future__ import annotations

import json
from pathlib import Path


def resumed_step(resume_from: str | None) -> int:
    """The step the checkpoint `resume_from` holds (0: the run starts at step 0)."""
    if resume_from is None:
        return 0
    return int(json.loads((Path(resume_from) / "trainer_state.json").read_text())["global_step"])


def run_training_loss(log_history: list[dict], resumed_at: int, call_loss: float, call_steps: int) -> float | None:
    """Mean loss over the run's steps: the logged losses up to `resumed_at`, each weighted by the
    steps since the log before it, with `call_loss` over the `call_steps` steps trained after it.
    None where no step's loss is known (nothing logged before the checkpoint, and no step since)."""
    total, steps, last = call_loss * call_steps, call_steps, 0
    for entry in log_history:
        step = entry.get("step", 0)
        if "loss" in entry and last < step <= resumed_at:
            total += entry["loss"] * (step - last)
            steps += step - last
            last = step
    return total / steps if steps else None
