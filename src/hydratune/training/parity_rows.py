"""The held-out tokens merged/ is checked on: a few rows, cut short, kept in the run directory.

They are written when training starts, so that an export (of the run or of one of its
checkpoints, from any working directory, after the data moved) needs neither the data
nor its cache: merged/ is compared with base+adapter on exactly these tokens.
"""

from __future__ import annotations

from pathlib import Path

import torch

from hydratune.training.collate import PackedCollator

PARITY_ROWS = 2
PARITY_TOKENS = 128


def parity_batch(rows, tokenizer) -> dict[str, torch.Tensor]:
    """The first rows of `rows` (the held-out split, else the training one), cut to PARITY_TOKENS."""
    picked = []
    for row in rows.select(range(min(PARITY_ROWS, len(rows)))):
        ids, seq_lens = _token_ids(row, tokenizer)
        n = min(PARITY_TOKENS, len(ids))
        lens, used = [], 0
        for length in seq_lens:
            take = min(length, n - used)
            if take <= 0:
                break
            lens.append(take)
            used += take
        picked.append({"input_ids": ids[:n], "labels": ids[:n], "seq_lens": lens})
    batch = PackedCollator(tokenizer.pad_token_id)(picked)
    return {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"]}


def _token_ids(row: dict, tokenizer) -> tuple[list[int], list[int]]:
    """A stored row's tokens and sequence lengths: packed SFT rows, preference rows, or a GRPO prompt."""
    if "input_ids" in row:
        return row["input_ids"], row["seq_lens"]
    if "prompt_ids" in row:
        ids = row["prompt_ids"] + (row.get("chosen_ids") or row.get("completion_ids") or [])
    else:
        ids = list(
            tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True, return_dict=True)[
                "input_ids"
            ]
        )
    return ids, [len(ids)]


def save_parity_rows(path: Path, batch: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.tmp")
    save_file({name: tensor.contiguous() for name, tensor in batch.items()}, str(tmp))
    tmp.replace(path)


def load_parity_rows(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))
