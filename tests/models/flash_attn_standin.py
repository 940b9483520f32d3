"""A pure-torch stand-in for flash-attn, so transformers' own flash_attention_2 path runs on the CPU.

flash-attn builds only against CUDA. Its dense and varlen functions are small enough to write with
SDPA: one call per sequence for the varlen one, as the kernel keeps each sequence to itself. What
transformers does around them (which function it picks, how it reshapes, which kwargs it passes)
is transformers' own code, unchanged. Installed for one test with `install_flash_attn_standin`,
which undoes every change when the test ends.
"""

from __future__ import annotations

import sys
import types

import torch
import torch.nn.functional as F


def _attend(q, k, v, softmax_scale, causal):
    """(batch, length, heads, head_dim) in and out, as flash-attn takes them; bottom-right causal
    alignment where the query is shorter than the keys (flash-attn 2.1 and later)."""
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    mask = None
    if causal:
        q_len, k_len = q.shape[2], k.shape[2]
        mask = torch.ones(q_len, k_len, dtype=torch.bool, device=q.device).tril(k_len - q_len)
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, scale=softmax_scale, enable_gqa=q.shape[1] != k.shape[1]
    )
    return out.transpose(1, 2)


def flash_attn_func(
    q,
    k,
    v,
    dropout_p=0.0,
    softmax_scale=None,
    causal=False,
    window_size=(-1, -1),
    softcap=0.0,
    alibi_slopes=None,
    deterministic=False,
    return_attn_probs=False,
):
    _supported(dropout_p, window_size, softcap, alibi_slopes)
    return _attend(q, k, v, softmax_scale, causal)


def flash_attn_varlen_func(
    q,
    k,
    v,
    cu_seqlens_q,
    cu_seqlens_k,
    max_seqlen_q,
    max_seqlen_k,
    dropout_p=0.0,
    softmax_scale=None,
    causal=False,
    window_size=(-1, -1),
    softcap=0.0,
    alibi_slopes=None,
    deterministic=False,
    return_attn_probs=False,
    block_table=None,
):
    """(total_tokens, heads, head_dim), each sequence between consecutive cu_seqlens attended alone."""
    _supported(dropout_p, window_size, softcap, alibi_slopes)
    if not isinstance(max_seqlen_q, int) or not isinstance(max_seqlen_k, int):
        raise TypeError("flash-attn's varlen kernel takes max_seqlen_q/k as Python ints")
    bounds_q, bounds_k = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
    if max_seqlen_q < max(b - a for a, b in zip(bounds_q, bounds_q[1:])):
        raise ValueError("max_seqlen_q is shorter than a sequence")
    outputs = [
        _attend(q[qa:qb][None], k[ka:kb][None], v[ka:kb][None], softmax_scale, causal)[0]
        for qa, qb, ka, kb in zip(bounds_q, bounds_q[1:], bounds_k, bounds_k[1:])
    ]
    return torch.cat(outputs)


def flash_attn_with_kvcache(*args, **kwargs):
    raise NotImplementedError("the flash-attn stand-in has no paged KV cache")


def _supported(dropout_p, window_size, softcap, alibi_slopes):
    if dropout_p or tuple(window_size) != (-1, -1) or softcap or alibi_slopes is not None:
        raise NotImplementedError("the flash-attn stand-in does not apply dropout, windows, softcap or ALiBi")


def _modules() -> dict[str, types.ModuleType]:
    from transformers.modeling_flash_attention_utils import _pad_input, _unpad_input

    package = types.ModuleType("flash_attn")
    package.__path__ = []  # a package, so `flash_attn.bert_padding` imports
    package.__version__ = "2.8.3"
    package.flash_attn_func = flash_attn_func
    package.flash_attn_varlen_func = flash_attn_varlen_func
    package.flash_attn_with_kvcache = flash_attn_with_kvcache
    padding = types.ModuleType("flash_attn.bert_padding")
    # flash-attn's own pad/unpad have the signatures transformers' copies were written to match
    padding.pad_input, padding.unpad_input = _pad_input, _unpad_input
    package.bert_padding = padding
    return {"flash_attn": package, "flash_attn.bert_padding": padding}


def install_flash_attn_standin(monkeypatch) -> None:
    """The stand-in in sys.modules, transformers told flash-attn 2 is available and may run on this
    device, and its cache of the loaded kernel cleared (so it loads the stand-in, and later tests
    load whatever they load)."""
    from transformers import modeling_flash_attention_utils as fa_utils
    from transformers.modeling_utils import PreTrainedModel

    for name, module in _modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(fa_utils, "is_flash_attn_2_available", lambda *args, **kwargs: True)
    # The load-time check reads availability from this table and refuses a CPU-only model; without
    # the first patch it would fetch a kernel from the Hub instead (the `kernels` package is installed).
    monkeypatch.setitem(
        fa_utils.FLASH_ATTENTION_COMPATIBILITY_MATRIX[2], "general_availability_check", lambda *args, **kwargs: True
    )
    monkeypatch.setattr(PreTrainedModel, "_flash_attn_can_dispatch", lambda self, *args, **kwargs: True)
    for cached in (
        "_loaded_implementation",
        "_flash_fn",
        "_flash_varlen_fn",
        "_flash_with_kvcache_fn",
        "_pad_fn",
        "_unpad_fn",
        "_process_flash_kwargs_fn",
        "_process_with_kvcache_kwargs_fn",
    ):
        monkeypatch.setattr(fa_utils, cached, None)
