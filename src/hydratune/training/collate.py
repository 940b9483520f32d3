"""Batches of packed rows: padded to the longest row, position_ids restarting per sequence.

No attention_mask is passed: SDPA and eager (transformers' masks), and sdpa_packed, read
sequence boundaries from position_ids that restart at 0, in every row. transformers'
flash-attention path reads them from position_ids only when the batch is one row
(`_is_packed_sequence`); for more, it would run causal attention over each whole row and
let every sequence see those packed before it. For flash kernels the batch therefore also
carries the boundaries themselves (`cu_seq_lens_q/k`, `max_length_q/k`, the names of
transformers' `DataCollatorWithFlattening`), over the micro-batch's rows laid end to end,
which is how the varlen kernel reads the (rows, length) batch. Rows, labels and the loss keep
their shape. Padding becomes one more sequence whose labels are masked.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from hydratune.data.tokenize_examples import IGNORE_INDEX
from hydratune.models.attention_choice import reads_boundaries_from_batch


def positions(seq_lens: Sequence[int]) -> list[int]:
    return [p for n in seq_lens for p in range(n)]


class PackedCollator:
    """`attn_implementation`: the model's (`model.config._attn_implementation`); flash kernels
    get the sequence boundaries in the batch."""

    def __init__(self, pad_token_id: int, attn_implementation: str | None = None):
        self.pad_token_id = pad_token_id
        self.boundaries = reads_boundaries_from_batch(attn_implementation)

    @classmethod
    def for_model(cls, model, pad_token_id: int):
        """The collator for the attention `model` (a transformers model, or one PEFT wraps) runs."""
        return cls(pad_token_id, attn_implementation=model.config._attn_implementation)

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        width = max(len(r["input_ids"]) for r in rows)
        ids, labels, pos, lengths = [], [], [], []
        for r in rows:
            pad = width - len(r["input_ids"])
            ids.append(list(r["input_ids"]) + [self.pad_token_id] * pad)
            labels.append(list(r["labels"]) + [IGNORE_INDEX] * pad)
            pos.append(positions(r["seq_lens"]) + list(range(pad)))
            lengths += [*r["seq_lens"], pad] if pad else r["seq_lens"]
        batch: dict[str, Any] = {
            "input_ids": torch.tensor(ids, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long),
            "position_ids": torch.tensor(pos, dtype=torch.long),
        }
        if self.boundaries:
            batch.update(sequence_boundaries(lengths))
        return batch


def sequence_boundaries(lengths: Sequence[int]) -> dict[str, Any]:
    """flash-attention's varlen arguments for sequences of these lengths laid end to end: int32
    offsets, and the longest length as a Python int (the kernel takes an int; made here, on the
    host, no layer has to read it back from the device)."""
    offsets = torch.zeros(len(lengths) + 1, dtype=torch.int32)
    offsets[1:] = torch.tensor(lengths, dtype=torch.int32).cumsum(0)
    longest = max(lengths)
    return {"cu_seq_lens_q": offsets, "cu_seq_lens_k": offsets, "max_length_q": longest, "max_length_k": longest}
