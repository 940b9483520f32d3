"""sdpa_packed: each packed sequence attended on its own gives what transformers' SDPA gives through
its block-diagonal mask, in the forward and in every gradient; batches it cannot read as whole
sequences (padding, a KV cache) take stock SDPA unchanged."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from hydratune.models.attention_choice import PACKED_SDPA, resolve_attention
from hydratune.models.packed_attention import register_packed_sdpa, sequence_lengths
from hydratune.training.collate import PackedCollator

from ..conftest import cpu_env
from ..tiny_llama import tiny_llama


def both(**config):
    """The same random-weight model twice: stock SDPA, and sdpa_packed."""
    register_packed_sdpa()
    stock, packed = tiny_llama(**config), tiny_llama(**config)
    for model in (stock, packed):
        model.config.use_cache = False  # as training builds it: with a cache, transformers' mask ignores packing
    packed.set_attn_implementation(PACKED_SDPA)
    assert packed.config._attn_implementation == PACKED_SDPA
    return stock, packed


def packed_batch(seq_lens: list[list[int]], seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for lens in seq_lens:
        ids = torch.randint(1, 300, (sum(lens),), generator=generator).tolist()
        rows.append({"input_ids": ids, "labels": ids, "seq_lens": lens})
    return PackedCollator(pad_token_id=0)(rows)


def test_sequence_lengths_restart_at_every_row_and_every_position_reset():
    positions = torch.tensor([[0, 1, 2, 0, 1], [0, 1, 0, 1, 2], [5, 6, 7, 8, 9]])
    assert sequence_lengths(positions) == [3, 2, 2, 3, 5]


@pytest.mark.parametrize("heads", [(4, 2), (4, 4)], ids=["grouped-query", "multi-head"])
def test_packed_rows_match_stock_sdpa_in_loss_and_gradients(heads):
    stock, packed = both(num_attention_heads=heads[0], num_key_value_heads=heads[1])
    # Rows of several sequences, a row of one, and padding (the collator's last sequence).
    batch = packed_batch([[7, 12, 5, 9], [33], [4, 1, 20]])
    results = []
    for model in (stock, packed):
        out = model(**batch)
        out.loss.backward()
        results.append((out.logits, {n: p.grad for n, p in model.named_parameters()}))
    (stock_logits, stock_grads), (packed_logits, packed_grads) = results
    assert torch.allclose(packed_logits, stock_logits, atol=1e-5)
    for name, grad in stock_grads.items():
        assert torch.allclose(packed_grads[name], grad, atol=1e-5), name


def test_sequences_do_not_see_each_other():
    """A sequence's logits are those it has alone: nothing leaks in from its row's others."""
    _, packed = both()
    batch = packed_batch([[6, 10]])
    second = {"input_ids": batch["input_ids"][:, 6:], "position_ids": torch.arange(10)[None]}
    with torch.no_grad():
        together = packed(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits[:, 6:]
        alone = packed(**second).logits
    assert torch.allclose(together, alone, atol=1e-5)


def test_padded_batches_and_generation_take_stock_sdpa():
    stock, packed = both()
    ids = torch.randint(1, 300, (2, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0  # left padding, as generation and post-training batches have it
    with torch.no_grad():
        assert torch.allclose(
            packed(input_ids=ids, attention_mask=mask).logits,
            stock(input_ids=ids, attention_mask=mask).logits,
            atol=1e-5,
        )
        kwargs = dict(
            input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0, use_cache=True
        )
        assert torch.equal(packed.generate(**kwargs), stock.generate(**kwargs))


def test_auto_takes_packed_sdpa_only_where_every_layer_is_plain_causal():
    from transformers import LlamaConfig, MistralConfig

    cpu = cpu_env()
    assert resolve_attention("auto", cpu, LlamaConfig()) == PACKED_SDPA
    assert resolve_attention("sdpa", cpu, LlamaConfig()) == "sdpa"
    windowed = MistralConfig(sliding_window=64)
    assert resolve_attention("auto", cpu, windowed) == "sdpa"
    with pytest.raises(ValueError, match="model.attn_implementation=sdpa_packed.*use auto or sdpa"):
        resolve_attention(PACKED_SDPA, cpu, windowed)
    # the fixes the message names
    assert resolve_attention("sdpa", cpu, windowed) == "sdpa"


def test_saved_config_names_no_attention_only_hydratune_registers(tmp_path):
    _, packed = both()
    packed.save_pretrained(tmp_path)
    assert PACKED_SDPA not in (tmp_path / "config.json").read_text()


def count_host_reads(monkeypatch) -> Counter:
    """Calls of the tensor methods that, on a CUDA tensor, wait for the GPU to hand a value to the host."""
    counts = Counter()
    for name in ("tolist", "nonzero", "item"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            counts[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return counts


def test_sequence_lengths_are_read_once_per_batch_not_per_layer(monkeypatch):
    """Four layers under activation checkpointing (each recomputed in backward): the lengths are read
    from position_ids once for the batch, and the outputs and gradients are those of reading them in
    every layer."""
    import hydratune.models.packed_attention as packed_attention

    _, cached = both(num_hidden_layers=4)
    _, per_layer = both(num_hidden_layers=4)
    monkeypatch.setattr(
        packed_attention, "batch_sequence_lengths", lambda ids, rows: sequence_lengths(ids.expand(rows, -1))
    )
    batch = packed_batch([[7, 12, 5, 9], [33], [4, 1, 20]])
    expected = per_layer(**batch)
    expected.loss.backward()
    monkeypatch.undo()

    cached.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    cached.train()
    counts = count_host_reads(monkeypatch)
    out = cached(**batch)
    out.loss.backward()
    assert counts == {"tolist": 1, "nonzero": 1}
    assert torch.equal(out.logits, expected.logits)
    for (name, param), (_, reference) in zip(cached.named_parameters(), per_layer.named_parameters()):
        assert torch.equal(param.grad, reference.grad), name

    # A new batch is read again; so is one whose position_ids were written in place since.
    second = packed_batch([[3, 30], [33], [10, 15]], seed=1)
    counts.clear()
    cached(**second)
    assert counts == {"tolist": 1, "nonzero": 1}
    with torch.no_grad():
        batch["position_ids"][0] = torch.arange(33)  # the first row becomes one sequence
        together = cached(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits[:1]
        alone = cached(input_ids=batch["input_ids"][:1]).logits
    assert torch.allclose(together, alone, atol=1e-5)
