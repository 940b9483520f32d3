"""Packing: bins respect capacity, and a packed row's loss equals its sequences' losses unpacked."""

from __future__ import annotations

import random

import pytest
import torch

from hydratune.data.packing import pack_lengths
from hydratune.training.collate import PackedCollator

IGNORE_INDEX = -100


def test_bins_hold_every_sequence_once_within_capacity():
    rng = random.Random(0)
    lengths = [rng.randint(20, 300) for _ in range(500)]
    bins = pack_lengths(lengths, 512)
    assert sorted(i for b in bins for i in b) == list(range(500))
    assert all(sum(lengths[i] for i in b) <= 512 for b in bins)
    assert len(bins) <= -(-sum(lengths) // 512) + 1  # at most one row above the bound
    assert pack_lengths(lengths, 512) == bins  # deterministic


@pytest.mark.parametrize("seed", range(4))
def test_each_row_is_the_best_fill_of_what_was_left(seed):
    """The packer reuses a row's fill for the next row with the same longest length while the
    counts it depends on stand: every row must still be the fill a fresh search finds."""
    import bisect
    from collections import Counter

    from hydratune.data.packing import _best_fill

    rng = random.Random(seed)
    # few distinct lengths with many copies (rows repeat), tiny ones (many copies fit), counts running out
    lengths = [rng.choice([1, 2, 3, 40, 41, 100, 170, 255, 256, 300, 511]) for _ in range(3000)]
    bins = pack_lengths(lengths, 512)
    left = Counter(lengths)
    sizes = sorted(left)
    for row in bins:
        members = sorted((lengths[i] for i in row), reverse=True)
        longest = sizes[-1]
        assert members[0] == longest
        assert sorted(_best_fill(left, sizes, 512 - longest, first=longest), reverse=True) == members[1:]
        for size in members:
            left[size] -= 1
            if not left[size]:
                del sizes[bisect.bisect_left(sizes, size)]
    assert not sizes


def test_a_sequence_longer_than_a_row_is_refused():
    with pytest.raises(ValueError, match="sequence 1 has 600 tokens"):
        pack_lengths([10, 600], 512)


def test_packed_loss_equals_token_weighted_unpacked_losses():
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        use_cache=False,
    )
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").eval()
    seqs, labels = [], []
    for n in (9, 14, 5, 20):
        ids = torch.randint(3, 128, (n,)).tolist()
        seqs.append(ids)
        # first token never predicted; a masked prompt of 2 tokens; the rest trained
        labels.append([IGNORE_INDEX, IGNORE_INDEX] + ids[2:])
    row = {"input_ids": sum(seqs, []), "labels": sum(labels, []), "seq_lens": [len(s) for s in seqs]}
    batch = PackedCollator(pad_token_id=0)(
        [row, {"input_ids": seqs[0], "labels": labels[0], "seq_lens": [len(seqs[0])]}]
    )
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits
        packed_loss = torch.nn.functional.cross_entropy(
            logits[0, :-1], batch["labels"][0, 1:], ignore_index=IGNORE_INDEX
        )
        total, count = 0.0, 0
        for ids, labs in zip(seqs, labels):
            loss = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labs])).loss
            n = sum(1 for t in labs[1:] if t != IGNORE_INDEX)
            total, count = total + loss.item() * n, count + n
        # the padded second row: its real sequence matches the unpacked one too
        padded = model(input_ids=batch["input_ids"][1:], position_ids=batch["position_ids"][1:]).logits[
            0, : len(seqs[0])
        ]
        alone = model(input_ids=torch.tensor([seqs[0]])).logits[0]
    assert abs(packed_loss.item() - total / count) < 1e-5
    assert torch.allclose(padded, alone, atol=1e-5)
