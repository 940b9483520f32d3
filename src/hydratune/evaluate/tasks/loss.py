"""Held-out loss and perplexity per supervised token, on the packed eval rows, during and after training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from hydratune.config.spec import knob
from hydratune.evaluate.tasks import Task


@dataclass(frozen=True)
class LossTaskSpec:
    every_n_steps: Optional[int] = knob(None, "Also evaluate during training every N steps; null: only at the end.", ge=1)
    max_rows: Optional[int] = knob(None, "Evaluate on at most this many packed eval rows.", ge=1)


TASK = Task(name="loss", options=LossTaskSpec, metrics=("eval_loss", "eval_perplexity"), higher_is_better=False, generative=False)
