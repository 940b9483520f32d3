"""The longest row of the prepared data, in the tokens one row puts through the model.

A micro-batch is padded to its longest row, so the longest row bounds how many tokens the
trainer holds activations for: it sizes the plan once the data exists, where rows are shorter
than dataset.max_length (preference pairs and prompts are, unpacked). Read from the Arrow
buffers' list lengths, without Python lists.
"""

from __future__ import annotations

import numpy as np

# What one stored row puts through the model, per kind of row: sequences of tokens added, and
# for a pair the longer of its two replies (chosen and rejected are padded to the same length).
_ROW_PARTS = {
    "input_ids": (("input_ids",),),
    "chosen_ids": (("prompt_ids",), ("chosen_ids", "rejected_ids")),
    "completion_ids": (("prompt_ids",), ("completion_ids",)),
}


def _lengths(rows, column: str) -> np.ndarray:
    import pyarrow.compute as pc

    lengths = pc.list_value_length(rows.data.column(column))
    return lengths.to_numpy(zero_copy_only=False).astype(np.int64)


def _row_lengths(rows) -> np.ndarray | None:
    if rows._indices is not None:  # a non-contiguous select(): its rows in order, as a table
        rows = rows.flatten_indices()
    columns = set(rows.column_names)
    if "prompt_tokens" in columns:  # grpo's prompts: the completion's length is the method's
        return rows.data.column("prompt_tokens").to_numpy(zero_copy_only=False).astype(np.int64)
    for key, parts in _ROW_PARTS.items():
        if key in columns:
            return sum(np.maximum.reduce([_lengths(rows, column) for column in part]) for part in parts)
    return None


def longest_row(*splits) -> int | None:
    """The most tokens one row of these splits puts through the model (splits that are None or
    empty are skipped); None when no split holds rows of a known kind."""
    longest = None
    for rows in splits:
        if rows is None or len(rows) == 0:
            continue
        lengths = _row_lengths(rows)
        if lengths is not None and len(lengths):
            longest = max(longest or 0, int(lengths.max()))
    return longest
