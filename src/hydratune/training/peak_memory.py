"""The memory a rank's training actually used, measured the way the plan estimates it:
everything that exists because of the model and its training (weights, gradients, optimizer
state, activations), not the interpreter and libraries loaded before.

On GPUs: `torch.cuda.max_memory_allocated` since the model was built, and beside it
`torch.cuda.max_memory_reserved` (the caching allocator's blocks, freed or not). On the CPU: the peak
resident set size above the resident size just before the model was built, with glibc's free
heap returned first (Linux resets the kernel's high-water mark through /proc/self/clear_refs,
so the peak is this run's), less the file-backed pages mapped since: the code of libraries that
training runs for the first time, which the run does not allocate and the plan does not count.
The RSS still holds the free heap glibc keeps during training, which the GPU figure (live
tensors only) leaves out (bench/plan_memory.py measures how much, BENCHMARKS.md has the figures).
How much it keeps depends on the process's history (glibc raises its mmap threshold after freeing
large blocks); MALLOC_MMAP_THRESHOLD_=131072 makes the RSS follow live memory, at a cost in speed.
"""

from __future__ import annotations

from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _return_free_heap() -> None:
    """Give glibc's free heap back to the kernel before the baseline is read. Preprocessing in
    the same process (a cache miss) leaves much of its heap free but resident: counted in the
    baseline and then reused by training, it would hide most of a small model's peak."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the baseline keeps whatever is free
        pass


class PeakMemory:
    def __init__(self) -> None:
        self.cuda = torch.cuda.is_available()
        self.baseline = 0
        self.reserved_baseline = 0
        self.file_baseline = 0

    def start(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            self.baseline = torch.cuda.memory_allocated()
            self.reserved_baseline = torch.cuda.memory_reserved()
            return
        _return_free_heap()
        try:
            Path("/proc/self/clear_refs").write_text("5")  # the high-water mark restarts from the current RSS
        except OSError:
            pass
        self.baseline = 1024 * (_status_kib("VmRSS") or 0)
        self.file_baseline = 1024 * (_status_kib("RssFile") or 0)

    def measured(self) -> dict | None:
        """{'bytes': peak above the baseline, 'as': what was measured}, or None where it cannot be read."""
        if self.cuda:
            # Reserved: what the caching allocator held at its peak (live tensors plus its cached and
            # fragmented blocks), which is what runs out first on a full GPU.
            return {
                "bytes": torch.cuda.max_memory_allocated() - self.baseline,
                "as": "torch.cuda.max_memory_allocated",
                "reserved_bytes": torch.cuda.max_memory_reserved() - self.reserved_baseline,
            }
        peak, mapped = _status_kib("VmHWM"), _status_kib("RssFile")
        if peak is None or mapped is None:
            return None
        # Library code stays mapped once touched: what is mapped at the end holds what was at the peak,
        # plus the code saving ran for the first time (so this errs low, by that code).
        code = max(0, 1024 * mapped - self.file_baseline)
        return {
            "bytes": 1024 * peak - self.baseline - code,
            "as": "peak RSS above the RSS before the model was built, less the file-backed pages mapped since",
        }
