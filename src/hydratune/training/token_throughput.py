"""Tokens/s and supervised tokens/s of training, logged with the loss.

The collator tells how many real (non-pad) tokens each row holds; the trainer counts
them when a batch reaches the model in training mode (not when it is built: the
dataloader runs a batch ahead, and eval batches go through the same collator).
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import torch
from transformers import TrainerCallback

from hydratune.data.tokenize_examples import IGNORE_INDEX
from hydratune.training.collate import PackedCollator

REAL_TOKENS = "real_tokens"


def synchronized_now() -> float:
    """perf_counter once the GPU has finished what was queued: CUDA kernels run asynchronously,
    so an unsynchronized reading can fall before a step's kernels end and move its time into the
    next interval. Only where this process has started CUDA (never to start it for a clock)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return time.perf_counter()


class CountingCollator(PackedCollator):
    """A PackedCollator whose batches also carry each row's count of real tokens."""

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        batch = super().__call__(rows)
        batch[REAL_TOKENS] = torch.tensor([len(r["input_ids"]) for r in rows], dtype=torch.long)
        return batch


class Throughput:
    """Token counts of training batches, and rates since the previous log, summed over ranks."""

    def __init__(self):
        self.tokens = 0
        self.supervised = 0
        self.last = (synchronized_now(), 0.0, 0.0)

        self.counted = False

    def take(self, batch: dict[str, Any], *, training: bool) -> dict[str, Any]:
        """Count a batch as it reaches the model (training batches only), minus the count column.

        Packed SFT batches carry REAL_TOKENS and labels; TRL's preference batches carry an
        attention_mask and a completion_mask (the trained tokens)."""
        if training and REAL_TOKENS in batch:
            self.tokens += int(batch[REAL_TOKENS].sum())
            self.supervised += int((batch["labels"] != IGNORE_INDEX).sum())
            self.counted = True
        elif training and "attention_mask" in batch and "completion_mask" in batch:
            self.tokens += int(batch["attention_mask"].sum())
            self.supervised += int(batch["completion_mask"].sum())
            self.counted = True
        return {k: v for k, v in batch.items() if k != REAL_TOKENS}

    def restart(self) -> None:
        self.last = (synchronized_now(), *self.last[1:])

    def measure(self, device) -> dict[str, float]:
        import torch.distributed as dist

        now = synchronized_now()
        counts = torch.tensor([self.tokens, self.supervised], dtype=torch.float64, device=device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(counts)
        tokens, supervised = counts.tolist()
        then, tokens0, supervised0 = self.last
        self.last = (now, tokens, supervised)
        elapsed = max(now - then, 1e-9)
        return {
            "tokens_per_second": (tokens - tokens0) / elapsed,
            "supervised_tokens_per_second": (supervised - supervised0) / elapsed,
            "tokens_seen": tokens,
        }


class FirstStepTime(TrainerCallback):
    """Seconds from the start of training to the end of its first optimizer step: what a
    compiled run pays to compile, beside the same figure of an eager one."""

    def __init__(self):
        self.started = time.perf_counter()
        self.seconds: float | None = None

    def restart(self) -> None:
        self.started, self.seconds = time.perf_counter(), None

    def on_step_end(self, args, state, control, **kwargs):
        if self.seconds is None:
            self.seconds = synchronized_now() - self.started
