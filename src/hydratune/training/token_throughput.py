"""Tokens/s and supervised tokens/s, counted where batches are built and logged with the loss."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Sequence

import torch

from .collate import IGNORE, PackedCollator


class CountingCollator(PackedCollator):
    """A PackedCollator that also counts the real (non-pad) and supervised tokens it batches."""

    def __init__(self, pad_token_id: int):
        super().__init__(pad_token_id)
        self.tokens = 0
        self.supervised = 0

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        self.tokens += sum(len(r["input_ids"]) for r in rows)
        self.supervised += sum(1 for r in rows for t in r["labels"] if t != IGNORE)
        return super().__call__(rows)


class Throughput:
    """Rates since the previous training log, summed over ranks."""

    def __init__(self, collator: CountingCollator):
        self.collator = collator
        self.last = (time.perf_counter(), 0, 0)
        self.total_seconds = 0.0

    def restart(self) -> None:
        self.last = (time.perf_counter(), self.collator.tokens, self.collator.supervised)

    @contextmanager
    def paused(self):
        tokens, supervised, start = self.collator.tokens, self.collator.supervised, time.perf_counter()
        yield
        self.collator.tokens, self.collator.supervised = tokens, supervised
        then, t0, s0 = self.last
        self.last = (then + time.perf_counter() - start, t0, s0)

    def measure(self, device) -> dict[str, float]:
        import torch.distributed as dist

        now = time.perf_counter()
        counts = torch.tensor([self.collator.tokens, self.collator.supervised], dtype=torch.float64, device=device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(counts)
        tokens, supervised = counts.tolist()
        then, tokens0, supervised0 = self.last
        self.last = (now, tokens, supervised)
        elapsed = max(now - then, 1e-9)
        self.total_seconds += elapsed
        return {
            "tokens_per_second": (tokens - tokens0) / elapsed,
            "supervised_tokens_per_second": (supervised - supervised0) / elapsed,
            "tokens_seen": tokens,
        }
