"""Sampling GRPO's completions with less work than a plain `generate` call, same distribution.

TRL's transformers path calls `generate` on the PEFT model with every prompt repeated
`num_generations` times. Two things in that call cost time without changing what is sampled:

- the prompt's forward pass runs once per completion, though the completions of a group share
  it: here each distinct prompt is run once and its key/value cache copied to its group;
- each adapted linear runs its LoRA branch beside the base matmul at every decoded token: here
  the adapter is folded into the base weights for the call (a weight-sized copy, restored
  untouched afterwards, so training sees the weights it had).

bench/grpo_step.py measures the step against plain TRL.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from transformers import DynamicCache


def generate_sharing_prompts(
    generate: Callable[..., torch.Tensor],
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    **kwargs: Any,
) -> torch.Tensor:
    """`generate(input_ids=..., attention_mask=..., **kwargs)` with each distinct prompt's
    forward pass run once. `model` is the module whose forward fills the cache (the one
    `generate` runs). The last prompt token is left to `generate`, which samples from it."""
    rows = torch.cat([input_ids, attention_mask.to(input_ids.dtype)], dim=1)
    distinct, group_of_row = torch.unique(rows, dim=0, return_inverse=True)
    cache_key = _cache_keyword(model)
    if len(distinct) == len(rows) or input_ids.shape[1] < 2 or cache_key in kwargs:
        return generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    width = input_ids.shape[1]
    prefix_ids, prefix_mask = distinct[:, : width - 1], distinct[:, width : 2 * width - 1]
    # positions as generate derives them from a left-padded mask
    positions = (prefix_mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=model.config)
    model(
        input_ids=prefix_ids,
        attention_mask=prefix_mask,
        position_ids=positions,
        use_cache=True,
        logits_to_keep=1,
        **{cache_key: cache},
    )
    cache.reorder_cache(group_of_row)  # each row takes its prompt's keys and values
    return generate(input_ids=input_ids, attention_mask=attention_mask, **{cache_key: cache}, **kwargs)


def _cache_keyword(model: torch.nn.Module) -> str:
    """`cache`, as newer transformers name the key/value cache argument (the old name still
    works there, with a deprecation warning), or `past_key_values` where that is the name."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


@contextmanager
def adapter_folded_in(model: torch.nn.Module) -> Iterator[None]:
    """Within the block, each LoRA layer's base weight holds W + scale * B @ A and the adapter is
    off, so a forward pass is one matmul per linear. The original weight tensors are put back
    afterwards (not subtracted, which would round), so no bit of them changes.

    A weight that another module reads too (tied input and output embeddings) is refused: the
    folded copy would hand one layer's delta to the other (see `can_fold_adapter`)."""
    from peft.tuners.lora import LoraLayer

    layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    shared = _shared_weight_storages(model)
    if any(_storage(layer.get_base_layer().weight) in shared for layer in layers):
        raise ValueError("the adapter cannot be folded: an adapted weight is shared with another module")
    swapped: list[tuple[torch.nn.Parameter, torch.Tensor]] = []
    try:
        with torch.no_grad():
            for layer in layers:
                weight = layer.get_base_layer().weight
                delta = sum(layer.get_delta_weight(name) for name in layer.active_adapters)
                swapped.append((weight, weight.data))
                weight.data = weight.data + delta.to(weight.dtype)
        with model.disable_adapter():
            yield
    finally:
        for weight, original in reversed(swapped):  # last folded first: each finds what it left
            weight.data = original


def _storage(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().data_ptr()


def _shared_weight_storages(model: torch.nn.Module) -> set[int]:
    """The storages that more than one parameter slot of the model reads: a tied weight is one
    Parameter registered under two modules (transformers' `tie_word_embeddings`)."""
    seen: set[int] = set()
    shared: set[int] = set()
    for _name, param in model.named_parameters(remove_duplicate=False):
        key = _storage(param)
        if key:  # 0: no memory of its own (an empty or meta tensor)
            (shared if key in seen else seen).add(key)
    return shared


def can_fold_adapter(model: torch.nn.Module) -> bool:
    """Whether every adapted layer is plain LoRA on a dense floating-point weight in CPU memory
    (not QLoRA's 4-bit weights, not DoRA, whose magnitude does not fold into one matrix) that no
    other module reads. Tied embeddings with `lm_head` (or `embed_tokens`) among the targets
    sample unfolded: folded, the output layer's delta would reach the input embeddings too.

    The folded copy holds every adapted weight once more while sampling: measured worth it on
    the CPU, where decoding is bound by memory traffic; not yet measured on a GPU, where the
    plan's memory estimate does not count that copy."""
    from peft.tuners.lora import LoraLayer

    layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    if not layers or not hasattr(model, "disable_adapter"):
        return False
    shared = _shared_weight_storages(model)
    for layer in layers:
        weight = getattr(layer.get_base_layer(), "weight", None)
        # bitsandbytes' quantized weights are Parameter subclasses, or integer tensors
        if type(weight) is not torch.nn.Parameter or not weight.dtype.is_floating_point:
            return False
        if weight.device.type != "cpu" or _storage(weight) in shared:
            return False
        if any(layer.use_dora.get(name) for name in layer.active_adapters):
            return False
    return True


@contextmanager
def in_eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Within the block every module is in eval mode (no dropout); afterwards each module is back
    in the mode it had, one by one (a module kept in eval mode during training stays so).

    GRPO samples under eval semantics: TRL's transformers path would otherwise sample in the
    training mode `Trainer.training_step` set, with `method.lora.dropout` dropping LoRA inputs,
    while the folded adapter (which switches the LoRA branch off) samples without it."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


@contextmanager
def fast_sampling(model: torch.nn.Module, fold_adapter: bool) -> Iterator[None]:
    """Within the block, `model.generate` shares prompt passes and, with `fold_adapter`, runs
    the adapter folded into the base weights."""
    own = vars(model).get("generate")  # a wrapper set on the instance (FSDP2 registers one)
    plain_generate = model.generate
    model.generate = lambda input_ids, attention_mask, **kwargs: generate_sharing_prompts(  # type: ignore[method-assign]
        plain_generate, model, input_ids, attention_mask, **kwargs
    )
    try:
        with adapter_folded_in(model) if fold_adapter else nullcontext():
            yield
    finally:
        if own is None:
            del model.generate  # the class's method shows again
        else:
            model.generate = own
