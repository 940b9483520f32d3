"""Packed micro-batches keep each sequence to itself under every attention kernel: under
flash-attention (transformers' own flash path, on a pure-torch stand-in for the kernels) a
micro-batch of several rows carries its sequence boundaries, and the loss and token counts
are those of the same rows without them."""

from __future__ import annotations

import pytest
import torch

from hydratune.data.tokenize_examples import IGNORE_INDEX
from hydratune.training.collate import PackedCollator
from hydratune.training.lean_loss import lean_causal_lm_loss
from hydratune.training.token_throughput import CountingCollator, Throughput

from ..models.flash_attn_standin import install_flash_attn_standin
from ..tiny_llama import tiny_llama

# Four rows: several sequences, one, a one-token sequence, and the shorter rows padded.
SEQ_LENS = [[7, 12, 5], [24], [4, 1, 9], [3, 6]]


@pytest.fixture
def flash_model(monkeypatch):
    install_flash_attn_standin(monkeypatch)
    model = tiny_llama(use_cache=False)  # as training builds it
    model.set_attn_implementation("flash_attention_2")
    assert model.config._attn_implementation == "flash_attention_2"
    return model.eval()


def packed_rows(seed: int = 0) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for lens in SEQ_LENS:
        ids = torch.randint(1, 300, (sum(lens),), generator=generator).tolist()
        labels = list(ids)
        start = 0
        for n in lens:
            labels[start] = IGNORE_INDEX  # each sequence's first token: never predicted from the one before
            start += n
        rows.append({"input_ids": ids, "labels": labels, "seq_lens": lens})
    return rows


def worst_leak(model, rows, batch) -> float:
    """The largest difference between a sequence's logits in the packed micro-batch and alone."""
    worst = 0.0
    with torch.no_grad():
        together = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], **flash_kwargs(batch))
        for row, logits in zip(rows, together.logits):
            start = 0
            for n in row["seq_lens"]:
                alone = model(input_ids=torch.tensor([row["input_ids"][start : start + n]])).logits[0]
                worst = max(worst, (logits[start : start + n] - alone).abs().max().item())
                start += n
    return worst


def flash_kwargs(batch) -> dict:
    return {k: v for k, v in batch.items() if k.startswith(("cu_seq_lens", "max_length"))}


def test_packed_micro_batch_under_flash_attention_matches_each_sequence_alone(flash_model):
    rows = packed_rows()
    batch = PackedCollator.for_model(flash_model, pad_token_id=0)(rows)
    assert batch["input_ids"].shape == (4, 24)
    assert worst_leak(flash_model, rows, batch) < 1e-5


def test_the_standin_shows_the_fault_the_boundaries_fix(flash_model):
    """Without the boundaries, transformers' flash path attends each whole row (the batch has
    more than one): a sequence sees the ones packed before it. This is what the test above
    would catch."""
    rows = packed_rows()
    assert worst_leak(flash_model, rows, PackedCollator(pad_token_id=0)(rows)) > 1e-2


def test_loss_and_token_counts_are_those_of_the_rows(flash_model):
    """The rows keep their shape under flash: the model's loss, the chunked loss and the counted
    tokens equal those of the same batch under SDPA, whose mask reads position_ids."""
    rows = packed_rows(seed=1)
    flash_batch = CountingCollator.for_model(flash_model, pad_token_id=0)(rows)
    sdpa_model = tiny_llama(use_cache=False).eval()
    sdpa_batch = CountingCollator(pad_token_id=0)(rows)
    assert set(flash_batch) - set(sdpa_batch) == {"cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k"}

    counted = []
    for batch in (flash_batch, sdpa_batch):
        throughput = Throughput()
        counted.append((throughput.take(batch, training=True), throughput.tokens, throughput.supervised))
    (flash_inputs, *flash_counts), (sdpa_inputs, *sdpa_counts) = counted
    real, sequences = sum(map(sum, SEQ_LENS)), sum(map(len, SEQ_LENS))
    assert flash_counts == sdpa_counts == [real, real - sequences]  # each sequence's first label is masked
    with torch.no_grad():
        plain = flash_model(**flash_inputs).loss
        assert torch.allclose(plain, sdpa_model(**sdpa_inputs).loss, atol=1e-5)
        assert torch.allclose(lean_causal_lm_loss(flash_model, flash_inputs, None), plain, atol=1e-5)


def test_boundaries_follow_the_rows_end_to_end_and_only_for_flash_kernels(flash_model):
    rows = [
        {"input_ids": [5, 6, 7, 8, 9], "labels": [5, 6, 7, 8, 9], "seq_lens": [3, 2]},
        {"input_ids": [5, 6, 7, 8], "labels": [5, 6, 7, 8], "seq_lens": [4]},
    ]
    batch = PackedCollator(pad_token_id=0, attn_implementation="flash_attention_2")(rows)
    # the second row's padding is a sequence of its own, as its restarting position_ids say
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1], [0, 1, 2, 3, 0]]
    assert batch["cu_seq_lens_q"].tolist() == batch["cu_seq_lens_k"].tolist() == [0, 3, 5, 9, 10]
    assert batch["cu_seq_lens_q"].dtype == torch.int32
    assert batch["max_length_q"] == batch["max_length_k"] == 4 and isinstance(batch["max_length_q"], int)
    for other in (None, "sdpa", "sdpa_packed", "eager"):
        assert set(PackedCollator(0, attn_implementation=other)(rows)) == {"input_ids", "labels", "position_ids"}

    from peft import LoraConfig, get_peft_model

    adapted = get_peft_model(flash_model, LoraConfig(r=4, target_modules=["q_proj"]))
    assert PackedCollator.for_model(adapted, pad_token_id=0).boundaries
