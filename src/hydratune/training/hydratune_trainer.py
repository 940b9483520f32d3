"""The HF Trainer with token throughput in its training logs and complete-checkpoint markers."""

from __future__ import annotations

from transformers import Trainer

from hydratune.training.checkpoints import MarkCompleteCheckpoints
from hydratune.training.token_throughput import REAL_TOKENS, Throughput


class HydratuneTrainer(Trainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.throughput = Throughput()
        self.add_callback(MarkCompleteCheckpoints())

    def train(self, *args, **kwargs):
        self.throughput.restart()
        return super().train(*args, **kwargs)

    def _prepare_inputs(self, inputs):
        if REAL_TOKENS in inputs:
            if self.model.training:
                self.throughput.count(inputs)
            inputs = {k: v for k, v in inputs.items() if k != REAL_TOKENS}
        return super()._prepare_inputs(inputs)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log, not an eval one
            logs.update(self.throughput.measure(self.args.device))
        super().log(logs, start_time)
