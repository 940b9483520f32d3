"""Held-out loss on the eval rows, during and after training.

sft: loss and perplexity per supervised token. dpo, kto: the method's loss, and how often
and by how much the policy prefers the chosen reply over the rejected one relative to the
reference (reward accuracy and margin), before (`_start`) and after training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from hydratune.config.spec import knob
from hydratune.evaluate.tasks import Task


@dataclass(frozen=True)
class LossTaskSpec:
    every_n_steps: Optional[int] = knob(None, "Also evaluate during training every N steps; null: only at the end.", ge=1)
    max_rows: Optional[int] = knob(None, "Evaluate on at most this many packed eval rows.", ge=1)


TASK = Task(name="loss", options=LossTaskSpec, metrics=("eval_loss", "eval_perplexity", "eval_reward_accuracy", "eval_reward_margin"), higher_is_better=False, generative=False)
