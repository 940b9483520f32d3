"""SDPA that attends each packed sequence on its own, with the causal kernel.

Packed rows hold several sequences, told apart by position_ids that restart at 0. Stock
SDPA attends them through a block-diagonal mask: every query scores every key of its row,
masked or not, and a masked call cannot use the kernels' causal block skipping. Attending
each sequence alone with `is_causal=True` computes only the lower triangle of each block:
for rows of a few sequences, a small fraction of the masked call's work, with the same result.

This relies on what flash-attention's varlen path in transformers relies on: the decoder
layers pass position_ids on to the attention function. Any batch this cannot read as
whole causal sequences (a padding mask, decoding after a prefix, a custom mask) takes stock SDPA with
transformers' mask, so generation and padded post-training batches are unchanged. The sequence
lengths are read from position_ids once per batch, not in every layer: on a GPU each read is a
host sync.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.weak import WeakIdKeyDictionary

from hydratune.models.attention_choice import PACKED_SDPA


def register_packed_sdpa() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(PACKED_SDPA, packed_sdpa_attention)
    AttentionMaskInterface.register(PACKED_SDPA, packed_sdpa_mask)


def packed_sdpa_mask(
    batch_size: int,
    q_length: int,
    kv_length: int,
    q_offset: int = 0,
    kv_offset: int = 0,
    attention_mask: torch.Tensor | None = None,
    local_size: int | None = None,
    use_vmap: bool = False,
    **kwargs,
) -> torch.Tensor | None:
    """No mask where the batch is whole causal sequences (the attention reads them from
    position_ids); transformers' SDPA mask otherwise."""
    from transformers.masking_utils import sdpa_mask

    whole_sequences = (
        attention_mask is None
        and local_size is None
        and not use_vmap  # custom and/or masks on top of the causal one
        and q_offset == 0
        and kv_offset == 0
        and q_length == kv_length
    )
    if whole_sequences:
        return None
    return sdpa_mask(
        batch_size=batch_size,
        q_length=q_length,
        kv_length=kv_length,
        q_offset=q_offset,
        kv_offset=kv_offset,
        attention_mask=attention_mask,
        local_size=local_size,
        use_vmap=use_vmap,
        **kwargs,
    )


def packed_sdpa_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    position_ids = kwargs.get("position_ids")
    plain_causal = (
        attention_mask is None
        and position_ids is not None
        and query.shape[2] == key.shape[2]
        and kwargs.get("is_causal", getattr(module, "is_causal", True))
        and kwargs.get("position_bias") is None
    )
    if not plain_causal:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    for unsupported in ("sliding_window", "softcap"):
        if kwargs.get(unsupported) is not None:
            raise ValueError(
                f"model.attn_implementation: {PACKED_SDPA} got {unsupported}={kwargs[unsupported]}, which it does "
                "not apply; set model.attn_implementation=sdpa"
            )
    return _attend_each_sequence(query, key, value, position_ids, dropout, scaling), None


@torch.compiler.disable  # the split follows the batch's sequence lengths: traced, each batch would recompile
def _attend_each_sequence(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    position_ids: torch.Tensor,
    dropout: float,
    scaling: float | None,
) -> torch.Tensor:
    batch, heads, length, head_dim = query.shape
    lengths = batch_sequence_lengths(position_ids, batch)
    # (batch * length, heads, head_dim): split's and cat's backward are one copy each, where
    # slicing each sequence out would add a full-size zero gradient per sequence.
    tokens = [t.transpose(1, 2).reshape(batch * length, t.shape[1], head_dim) for t in (query, key, value)]
    # 4-D (1, heads, n, head_dim): SDPA's CPU flash kernel takes no other shape (3-D runs the math one).
    outputs = [
        F.scaled_dot_product_attention(
            q.transpose(0, 1)[None],
            k.transpose(0, 1)[None],
            v.transpose(0, 1)[None],
            dropout_p=dropout,
            scale=scaling,
            is_causal=True,
            enable_gqa=q.shape[1] != k.shape[1],
        )[0].transpose(0, 1)
        for q, k, v in zip(*(t.split(lengths) for t in tokens))
    ]
    return torch.cat(outputs).view(batch, length, heads, head_dim)


# The split needs the lengths on the host: reading them from a CUDA tensor waits for the GPU to
# catch up. Every layer, and its recompute under activation checkpointing, gets the very tensor
# the model was called with, so the lengths are read once per batch and kept while it lives.
_LENGTHS: WeakIdKeyDictionary = WeakIdKeyDictionary()


def batch_sequence_lengths(position_ids: torch.Tensor, batch: int) -> list[int]:
    """sequence_lengths of this batch's position_ids (broadcast to `batch` rows), read once for
    all the layers. Written in place since, or an inference tensor (which keeps no version
    count): read again."""
    if position_ids.is_inference():
        return sequence_lengths(position_ids.expand(batch, -1))
    version = (position_ids._version, batch)
    kept = _LENGTHS.get(position_ids)
    if kept is None or kept[0] != version:
        kept = _LENGTHS[position_ids] = (version, sequence_lengths(position_ids.expand(batch, -1)))
    return kept[1]


def sequence_lengths(position_ids: torch.Tensor) -> list[int]:
    """The lengths of the sequences of a (batch, length) position_ids, row after row: a sequence
    starts where a position does not follow the one before it (transformers' rule), and at
    every row's start."""
    starts = torch.ones_like(position_ids, dtype=torch.bool)
    starts[:, 1:] = position_ids[:, 1:] - position_ids[:, :-1] != 1
    begin = starts.reshape(-1).nonzero().squeeze(1)
    return torch.diff(begin, append=begin.new_tensor([position_ids.numel()])).tolist()
