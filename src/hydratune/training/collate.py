"""Batches of packed rows: padded to the longest row, position_ids restarting per sequence.

No attention_mask is passed: transformers then reads sequence boundaries from
position_ids that restart at 0 (block-diagonal attention under SDPA, varlen kernels
under flash-attention). Padding becomes one more sequence whose labels are masked.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from hydratune.data.tokenize_examples import IGNORE_INDEX


def positions(seq_lens: Sequence[int]) -> list[int]:
    return [p for n in seq_lens for p in range(n)]


class PackedCollator:
    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(r["input_ids"]) for r in rows)
        ids, labels, pos = [], [], []
        for r in rows:
            pad = width - len(r["input_ids"])
            ids.append(list(r["input_ids"]) + [self.pad_token_id] * pad)
            labels.append(list(r["labels"]) + [IGNORE_INDEX] * pad)
            pos.append(positions(r["seq_lens"]) + list(range(pad)))
        return {
            "input_ids": torch.tensor(ids, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long),
            "position_ids": torch.tensor(pos, dtype=torch.long),
        }
