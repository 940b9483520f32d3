"""Held-out loss on the eval rows, during and after training.

sft: loss and perplexity per supervised token. dpo, kto: the method's loss, and how often
and by how much the policy prefers the chosen reply over the rejected one relative to the
reference (reward accuracy and margin), before (`_start`) and after training."""

from __future__ import annotations

from hydratune.config.spec import LossTaskSpec
from hydratune.evaluate.tasks import Task

TASK = Task(
    name="loss",
    options=LossTaskSpec,
    metrics=("eval_loss", "eval_perplexity", "eval_reward_accuracy", "eval_reward_margin"),
    higher_is_better=False,
    generative=False,
)
