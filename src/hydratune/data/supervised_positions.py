"""How many positions the chunked loss can hold logits for at once, read from the shards.

The chunked loss gathers a micro-batch's supervised positions (where the next token's label
is trained) and makes their logits at most `CHUNK_TOKENS` at a time. A micro-batch that
supervises fewer holds fewer: short rows, or prompts longer than their answers. The plan
counts a whole chunk until the data exists; after that, this bound sizes the term.
"""

from __future__ import annotations

import numpy as np

from hydratune.data.tokenize_examples import IGNORE_INDEX


def supervised_per_row(rows) -> np.ndarray:
    """For each row of a shard-backed `datasets.Dataset`: the positions whose next token is
    trained (labels[1:] != IGNORE_INDEX), counted on the Arrow buffers without Python lists."""
    if rows._indices is not None:  # a non-contiguous select(): its rows in order, as a table
        rows = rows.flatten_indices()
    counts = []
    for chunk in rows.data.column("labels").chunks:
        offsets = chunk.offsets.to_numpy(zero_copy_only=False)  # index into the whole values buffer
        starts, ends = offsets[:-1], offsets[1:]
        # one byte per token; a sliced chunk's rows end before its values buffer does
        trained = chunk.values.to_numpy(zero_copy_only=False)[: offsets[-1]] != IGNORE_INDEX
        nonempty = starts < ends
        per_row = np.zeros(len(starts), dtype=np.int64)
        per_row[nonempty] = np.add.reduceat(trained, starts[nonempty], dtype=np.int64)
        # a row's first label predicts nothing: the loss starts at its second position
        per_row[nonempty] -= trained[starts[nonempty]]
        counts.append(per_row)
    return np.concatenate(counts) if counts else np.zeros(0, dtype=np.int64)


def most_supervised_per_micro_batch(micro_batch_size: int, *splits) -> int:
    """The most supervised positions any micro-batch of these rows can hold: the sum over the
    `micro_batch_size` rows that supervise the most (splits that are None are skipped)."""
    most = 0
    for rows in splits:
        if rows is None or len(rows) == 0:
            continue
        counts = supervised_per_row(rows)
        top = np.partition(counts, len(counts) - min(micro_batch_size, len(counts)))[-micro_batch_size:]
        most = max(most, int(top.sum()))
    return most
