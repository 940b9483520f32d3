"""The causal-LM loss computed only where a label is supervised, a chunk of tokens at a time
(`train.loss_kernel=chunked`).

The plain path runs the LM head on every position, prompt included, and keeps the whole
(tokens x vocabulary) logits and their softmax for the backward pass: for a 49k vocabulary
that is 0.4 GB per 1,000 tokens in fp32, more than the rest of a small model's activations.
Here the model returns its final hidden states (the head is bypassed for that one call),
the supervised positions are gathered, and each chunk's logits are made, reduced to a sum
of cross-entropies and dropped; the backward pass recomputes them chunk by chunk. The
loss is the plain one (same sum over supervised tokens, same divisor) to float rounding.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

IGNORE = -100
CHUNK_TOKENS = 256  # logits of one chunk: 256 x vocab x 4 bytes (50 MB for a 49k vocabulary)

# Models whose head output is rescaled before the softmax: the chunked loss would differ.
RESCALED_LOGITS = ("final_logit_softcapping", "logit_scale", "output_multiplier_scale")


def rescaled_logits(config) -> str | None:
    """`key=value` of the setting with which a model rescales its logits, or None."""
    for name in RESCALED_LOGITS:
        if getattr(config, name, None) not in (None, 1.0):
            return f"{name}={getattr(config, name)}"
    return None


def use_chunked_loss(spec, model) -> bool:
    """Resolve train.loss_kernel for this spec and the loaded model."""
    from hydratune.config.problems import ConfigError, Problem
    from hydratune.config.validation import chunked_loss_blocked

    kernel = spec.train.loss_kernel
    if kernel == "plain" or chunked_loss_blocked(spec):
        return False  # an explicit `chunked` that is blocked was refused by validation
    reason = unsupported_reason(model)
    if reason and kernel == "chunked":
        raise ConfigError([Problem("train.loss_kernel=chunked", f"{reason}, so its loss is not a plain cross-entropy", "use train.loss_kernel=auto")])
    return reason is None


def unsupported_reason(model) -> str | None:
    """Why the chunked loss cannot stand in for this model's own, or None."""
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    rescale = rescaled_logits(causal_lm.config)
    if rescale:
        return f"the model rescales its logits ({rescale})"
    head = causal_lm.get_output_embeddings()
    if not isinstance(head, torch.nn.Linear):
        return f"its output layer is a {type(head).__name__}, not a plain Linear (a 4-bit or adapted head)"
    return None


@contextmanager
def _head_bypassed(head: torch.nn.Module) -> Iterator[None]:
    """The model returns its final hidden states as `logits` during the call: the head's
    forward is replaced on the instance only (its weights and state dict are untouched)."""
    head.forward = lambda hidden: hidden
    try:
        yield
    finally:
        del head.forward


def _chunk_loss(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor) -> torch.Tensor:
    logits = F.linear(hidden, weight, bias).float()
    return F.cross_entropy(logits, targets, reduction="sum")


def supervised_loss_sum(hidden: torch.Tensor, labels: torch.Tensor, head: torch.nn.Linear, chunk: int = CHUNK_TOKENS) -> torch.Tensor:
    """Sum of next-token cross-entropies over supervised positions. `hidden`: (batch, seq, dim)
    final hidden states; `labels`: (batch, seq), IGNORE where not trained."""
    targets = labels[:, 1:]
    keep = targets != IGNORE
    states, targets = hidden[:, :-1][keep], targets[keep]
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, targets.numel(), chunk):
        part = slice(start, start + chunk)
        # Recomputed in the backward pass: a chunk's logits never outlive its forward.
        total = total + checkpoint(_chunk_loss, states[part], head.weight, head.bias, targets[part], use_reentrant=False)
    return total


def lean_causal_lm_loss(model, inputs: dict, num_items_in_batch) -> torch.Tensor:
    """The loss of `model` (unwrapped or wrapped by DDP/DeepSpeed/PEFT) on `inputs`, divided
    by `num_items_in_batch` (the step's supervised tokens) like the plain loss, or by this
    batch's own supervised tokens when it is not given."""
    inner = model.module if hasattr(model, "module") else model
    causal_lm = inner.get_base_model() if hasattr(inner, "get_base_model") else inner
    head = causal_lm.get_output_embeddings()
    labels = inputs["labels"]
    with _head_bypassed(head):
        hidden = model(**{k: v for k, v in inputs.items() if k != "labels"}).logits
    total = supervised_loss_sum(hidden, labels, head)
    count = num_items_in_batch if num_items_in_batch is not None else (labels[:, 1:] != IGNORE).sum()
    return total / count
