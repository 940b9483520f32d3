"""The one clock every side of a benchmark reads: it waits for the GPU before each reading.

CUDA kernels run asynchronously: without `torch.cuda.synchronize()` a timestamp taken at
the end of a step can fall before that step's kernels have finished, and the time is
charged to whatever waits next (or to nothing). The peers (the tutorial script, TRL's trainers)
take their step times from here, and hydratune's rate log reads the same `synchronized_now`, so
every side is timed by one rule.
"""

from __future__ import annotations

from transformers import TrainerCallback

from hydratune.training.token_throughput import synchronized_now


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
