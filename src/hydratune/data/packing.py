"""Bin packing of sequences into rows of a fixed token capacity, on lengths only.

Each row keeps its sequences' lengths; the collator turns them into position_ids
that restart at 0 per sequence, which transformers reads as separate sequences
(block-diagonal attention under SDPA, varlen under flash-attention).

The packer is minimum-bin-slack: each new row takes the longest sequence left and fills
the rest of its room with the subset of the remaining sequences that leaves the least
room, preferring longer sequences (short ones are kept for the long ones' gaps).
Best-fit-decreasing, which it replaced, closes every row as soon as no single sequence
fits, and left 1.1% of GSM8K's rows empty at 2048 tokens and 3.7% at 512; this packer
leaves 0.1% and 0.6% (the bound is 0.1% and 0.01%).
"""

from __future__ import annotations

import bisect
from collections import Counter
from typing import Sequence


def pack_lengths(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Group sequence indices into bins of total length <= capacity. Deterministic:
    the same lengths give the same bins."""
    for i, size in enumerate(lengths):
        if size > capacity:
            raise ValueError(f"sequence {i} has {size} tokens, more than the row capacity {capacity}")
    left = Counter(lengths)
    # Indices of each length, longest first; a bin takes lengths, indices are handed out after.
    indices: dict[int, list[int]] = {}
    for i in sorted(range(len(lengths)), key=lambda i: (lengths[i], -i)):
        indices.setdefault(lengths[i], []).append(i)
    sizes = sorted(left)
    bins: list[list[int]] = []
    # A fill depends on the longest length and, for every length that fits beside it, on
    # min(copies left, copies that fit): while no count falls to the copies that could fit,
    # the next row with the same longest length gets the same fill, found once. `changes`
    # counts the falls; a remembered fill is reused only if none came after it.
    fills: dict[int, tuple[int, list[int]]] = {}
    changes = 0
    while sizes:
        longest = sizes[-1]
        remembered = fills.get(longest)
        if remembered is not None and remembered[0] == changes:
            fill = remembered[1]
        else:
            fill = _best_fill(left, sizes, capacity - longest, first=longest)
            fills[longest] = (changes, fill)
        members = [longest, *fill]
        for size in members:
            left[size] -= 1
            if left[size] <= capacity // size:
                changes += 1
            if not left[size]:
                del sizes[bisect.bisect_left(sizes, size)]
        bins.append([indices[size].pop() for size in members])
    return bins


def _best_fill(left: Counter, sizes: list[int], room: int, *, first: int) -> list[int]:
    """The multiset of remaining lengths (one `first` already taken) with the largest sum
    <= room: a bounded subset-sum over distinct lengths, longest first, as bit sets.

    Python integers are the bit sets: bit s is set when a sum of s tokens is reachable.
    Each length's copies are added in doubling groups (1, 2, 4, ...), so a length with c
    copies costs log2(c) shifts; the search stops once the room can be filled exactly.
    """
    if room <= 0:
        return []
    mask = (1 << (room + 1)) - 1
    reach = 1
    steps: list[tuple[int, int, int]] = []  # (length, copies, reachable sums before adding them)
    for k in range(bisect.bisect_right(sizes, room) - 1, -1, -1):  # the lengths that fit, longest first
        size = sizes[k]
        copies = left[size] - (size == first)
        copies = room // size if room // size < copies else copies
        group = 1
        while copies > 0:
            take = group if group < copies else copies
            steps.append((size, take, reach))
            reach = (reach | (reach << (size * take))) & mask
            copies -= take
            group *= 2
        if reach >> room & 1:
            break
    target = reach.bit_length() - 1
    chosen: list[int] = []
    # Walk back: a group is used exactly when the target was not reachable without it.
    for size, take, before in reversed(steps):
        if not before >> target & 1:
            target -= size * take
            chosen += [size] * take
    return chosen


def packing_efficiency(lengths: Sequence[int], bins: Sequence[Sequence[int]], capacity: int) -> float:
    """Real tokens over row capacity."""
    return sum(lengths) / (len(bins) * capacity) if bins else 0.0
