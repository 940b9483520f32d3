"""Which attention kernel a run trains with."""

from __future__ import annotations

from hydratune.config.environment import Environment

# SDPA one packed sequence at a time (models/packed_attention.py).
PACKED_SDPA = "sdpa_packed"


def reads_boundaries_from_batch(attn_implementation: str | None) -> bool:
    """flash-attention 2/3/4 (transformers' names): for batches of more than one row, transformers
    passes them sequence boundaries only from `cu_seq_lens_q/k` and `max_length_q/k` in the batch,
    never from position_ids (`_is_packed_sequence` in modeling_flash_attention_utils)."""
    return bool(attn_implementation) and attn_implementation.startswith("flash_attention")


def supports_packed_sdpa(config) -> bool:
    """Every layer plain causal attention: no sliding windows, chunks or soft-capping, which the
    one-sequence-at-a-time path does not apply."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    layer_types = getattr(text, "layer_types", None) or ["full_attention"]
    windowed = getattr(text, "sliding_window", None) and getattr(text, "use_sliding_window", True)
    return (
        set(layer_types) == {"full_attention"}
        and not windowed
        and getattr(text, "attention_chunk_size", None) is None
        and getattr(text, "attn_logit_softcapping", None) is None
    )


def resolve_attention(requested: str, env: Environment, config) -> str:
    """`auto`: flash-attention 2 on CUDA with flash-attn installed, else SDPA one packed sequence at
    a time where every layer of the model is plain causal attention, else stock SDPA."""
    packed = supports_packed_sdpa(config)
    if requested == "auto":
        if env.cuda and env.has("flash_attn"):
            return "flash_attention_2"
        return PACKED_SDPA if packed else "sdpa"
    if requested == PACKED_SDPA and not packed:
        raise ValueError(
            f"model.attn_implementation={PACKED_SDPA}: {type(config).__name__} has layers that are not plain causal "
            "attention (a sliding window, chunks or soft-capping); use auto or sdpa"
        )
    return requested
