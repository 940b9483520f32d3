"""The one clock every side of a benchmark reads: it waits for the GPU before each reading.

CUDA kernels run asynchronously: without `torch.cuda.synchronize()` a timestamp taken at
the end of a step can fall before that step's kernels have finished, and the time is
charged to whatever waits next (or to nothing). Each side (hydratune, the tutorial script,
TRL's trainers) takes its step times from here, so every side is timed the same way.
"""

from __future__ import annotations

import time

import torch
from transformers import TrainerCallback


def cuda_in_use() -> bool:
    """CUDA is there and this process has started it: synchronizing then costs nothing else
    (asking an uninitialized process to synchronize would start CUDA just to time nothing)."""
    return torch.cuda.is_available() and torch.cuda.is_initialized()


def synchronized_now() -> float:
    """perf_counter after every queued GPU kernel of this process has finished."""
    if cuda_in_use():
        torch.cuda.synchronize()
    return time.perf_counter()


class StepClock(TrainerCallback):
    """Each optimizer step's seconds, from its beginning to its end, on the synchronized clock."""

    def __init__(self):
        self.stamps: list[float] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self.stamps.append(synchronized_now())

    def on_step_end(self, args, state, control, **kwargs):
        self.stamps.append(synchronized_now())

    def durations(self) -> list[float]:
        return [end - begin for begin, end in zip(self.stamps[0::2], self.stamps[1::2])]
