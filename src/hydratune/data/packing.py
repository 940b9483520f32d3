"""Best-fit-decreasing bin packing of sequences into rows of a fixed token capacity.

Each row keeps its sequences' lengths; the collator turns them into position_ids
that restart at 0 per sequence, which transformers reads as separate sequences
(block-diagonal attention under SDPA, varlen under flash-attention).
"""

from __future__ import annotations

import bisect
from typing import Sequence


def best_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Group sequence indices into bins of total length <= capacity, fewest bins first-class.

    Longest first; each goes into the fullest bin that still has room (O(n log n) with a
    sorted list of (room, bin) pairs).
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    rooms: list[tuple[int, int]] = []  # sorted (room left, bin index)
    for i in order:
        size = lengths[i]
        if size > capacity:
            raise ValueError(f"sequence {i} has {size} tokens, more than the row capacity {capacity}")
        at = bisect.bisect_left(rooms, (size, -1))
        if at < len(rooms):
            room, b = rooms.pop(at)
            bins[b].append(i)
            bisect.insort(rooms, (room - size, b))
        else:
            bins.append([i])
            bisect.insort(rooms, (capacity - size, len(bins) - 1))
    return bins


def packing_efficiency(lengths: Sequence[int], bins: Sequence[Sequence[int]], capacity: int) -> float:
    """Real tokens over row capacity."""
    return sum(lengths) / (len(bins) * capacity) if bins else 0.0
