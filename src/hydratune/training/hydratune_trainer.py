"""The HF Trainer with token throughput in its training logs and complete-checkpoint markers."""

from __future__ import annotations

from transformers import Trainer

from .checkpoints import MarkCompleteCheckpoints
from .token_throughput import CountingCollator, Throughput


class HydratuneTrainer(Trainer):
    def __init__(self, *args, data_collator: CountingCollator, **kwargs):
        super().__init__(*args, data_collator=data_collator, **kwargs)
        self.throughput = Throughput(data_collator)
        self.add_callback(MarkCompleteCheckpoints())

    def train(self, *args, **kwargs):
        self.throughput.restart()
        return super().train(*args, **kwargs)

    def evaluate(self, *args, **kwargs):
        with self.throughput.paused():  # eval batches go through the same collator; they are not training tokens
            return super().evaluate(*args, **kwargs)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log, not an eval one
            logs.update(self.throughput.measure(self.args.device))
        super().log(logs, start_time)
