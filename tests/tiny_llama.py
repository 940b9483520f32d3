"""A two-layer Llama with random weights, small enough to build in a test."""

from __future__ import annotations

import torch


def tiny_llama(**config):
    """The model, seeded, with SDPA attention; `config` overrides LlamaConfig's fields."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    fields = dict(
        vocab_size=300,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    return AutoModelForCausalLM.from_config(LlamaConfig(**{**fields, **config}), attn_implementation="sdpa")
