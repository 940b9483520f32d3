"""The HF Trainer (and TRL's trainers, its subclasses) with token throughput in the training
logs and complete-checkpoint markers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import Trainer

from hydratune.training.checkpoints import (
    MarkCompleteCheckpoints,
    barrier,
    clear_marker,
)
from hydratune.training.lean_loss import lean_causal_lm_loss
from hydratune.training.token_throughput import FirstStepTime, Throughput


class HydratuneMixin:
    """What every hydratune trainer adds, mixed in before the HF or TRL trainer class."""

    def __init__(self, *args, identity: dict[str, Any], keep_checkpoints: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.throughput = Throughput()
        self.first_step = FirstStepTime()
        self.add_callback(MarkCompleteCheckpoints(identity, keep_checkpoints))
        self.add_callback(self.first_step)

    def _save_checkpoint(self, model, trial):
        if self.is_world_process_zero():
            clear_marker(Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}")
        barrier()  # no rank writes into the folder while its old marker still vouches for it
        return super()._save_checkpoint(model, trial)

    def train(self, *args, **kwargs):
        self.throughput.restart()
        self.first_step.restart()
        return super().train(*args, **kwargs)

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        # The Trainer checks its step budget after each step: resumed from a checkpoint at the
        # budget (a run killed during export) it would train one step past it, at a learning rate
        # past the schedule's end. No batch, no step: training ends where the checkpoint is.
        if 0 < self.state.max_steps <= self.state.global_step:
            return [], None
        return super().get_batch_samples(epoch_iterator, num_batches, device)

    def _prepare_inputs(self, inputs):
        if isinstance(inputs, dict):  # GRPO passes raw rows (a list) on to be sampled from
            inputs = self.throughput.take(inputs, training=self.model.training)
        return super()._prepare_inputs(inputs)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self.throughput.counted:  # a training log, not an eval one
            logs.update(self.throughput.measure(self.args.device))
        super().log(logs, start_time)


class HydratuneTrainer(HydratuneMixin, Trainer):
    """Supervised fine-tuning on packed rows; with `chunked_loss`, the loss of lean_loss."""

    def __init__(self, *args, chunked_loss: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.chunked_loss = chunked_loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self.chunked_loss:
            return super().compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
        loss = lean_causal_lm_loss(model, inputs, num_items_in_batch)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            # as Trainer does: the divisor counts every rank's tokens, and DDP averages gradients over ranks
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        return (loss, {"loss": loss}) if return_outputs else loss
