"""The causal-LM loss computed only where a label is supervised, a chunk of tokens at a time
(`train.loss_kernel=chunked`).

The plain path runs the LM head on every position, prompt included, and keeps the whole
(tokens x vocabulary) logits and their softmax for the backward pass: for a 49k vocabulary
that is 0.4 GB per 1,000 tokens in fp32, more than the rest of a small model's activations.
Here the head's call computes the loss instead of the logits (for that one call): the
supervised positions are gathered, and each chunk's logits are made, reduced to a sum
of cross-entropies, turned in place into their own gradient and dropped: the gradients of
the hidden states (and of the head, where it trains) are computed in the forward pass, so
backward only scales them (the approach of Liger's fused linear cross-entropy). Recomputing
each chunk's logits in backward instead (activation checkpointing) would cost an extra pass
of the head and the softmax; bench/loss_kernel.py measures both against the plain loss
(BENCHMARKS.md). The loss is the plain one (same sum over supervised tokens, same divisor)
to float rounding. Because it runs inside the head's own call, the head's weight is whole
there under FSDP2 (the root unit is gathered for its forward) and ZeRO-3 (the module's hook
gathers it), and its gradient reaches the strategy's reduction as the plain loss's does.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F

from hydratune.config.problems import ConfigError, Problem
from hydratune.data.tokenize_examples import IGNORE_INDEX
from hydratune.training.support_matrix import (
    CHUNK_TOKENS,
    chunked_loss_blocked,
    rescaled_logits,
)


def use_chunked_loss(spec, model) -> bool:
    """Resolve train.loss_kernel for this spec and the loaded model."""
    kernel = spec.train.loss_kernel
    if kernel == "plain" or chunked_loss_blocked(spec):
        return False  # an explicit `chunked` that is blocked was refused by validation
    reason = unsupported_reason(model)
    if reason and kernel == "chunked":
        raise ConfigError(
            [
                Problem(
                    "train.loss_kernel=chunked",
                    f"{reason}, so its loss is not a plain cross-entropy",
                    "use train.loss_kernel=auto",
                )
            ]
        )
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
def _head_computes_loss(head: torch.nn.Linear, labels: torch.Tensor) -> Iterator[None]:
    """The model returns the sum of supervised cross-entropies as `logits` during the call: the
    head's forward is replaced on the instance only (its weights, hooks and state dict are
    untouched, so a sharding strategy gathers the weight for the call as for its own forward)."""
    head.forward = lambda hidden: supervised_loss_sum(hidden, labels, head)
    try:
        yield
    finally:
        del head.forward


class _FusedLinearCrossEntropy(torch.autograd.Function):
    """Sum over rows of cross_entropy(states @ weight.T + bias, targets), with its gradients
    made chunk by chunk in the forward pass and kept for backward."""

    @staticmethod
    def forward(ctx, states, weight, bias, targets, chunk: int, want_grads: bool):
        total = torch.zeros((), dtype=torch.float32, device=states.device)
        grad_states = torch.empty_like(states) if want_grads else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if want_grads and weight.requires_grad else None
        grad_bias = (
            torch.zeros_like(bias, dtype=torch.float32)
            if want_grads and bias is not None and bias.requires_grad
            else None
        )
        for start in range(0, targets.numel(), chunk):
            rows, target = states[start : start + chunk], targets[start : start + chunk]
            logits = F.linear(rows, weight, bias).float()
            log_norm = torch.logsumexp(logits, dim=-1)
            total += (log_norm - logits.gather(1, target[:, None]).squeeze(1)).sum()
            if grad_states is not None:
                # d(sum of cross-entropies)/d(logits) = softmax - one-hot, written over the logits
                grad_logits = logits.sub_(log_norm[:, None]).exp_()
                grad_logits[torch.arange(len(target), device=target.device), target] -= 1
                grad_logits = grad_logits.to(rows.dtype)
                grad_states[start : start + chunk] = grad_logits @ weight
                if grad_weight is not None:
                    grad_weight += (grad_logits.t() @ rows).float()
                if grad_bias is not None:
                    grad_bias += grad_logits.float().sum(0)
                del grad_logits
            # freed before the next chunk's logits are made: otherwise two chunks are alive at once
            del logits
        ctx.save_for_backward(grad_states, grad_weight, grad_bias)
        ctx.dtypes = (weight.dtype, None if bias is None else bias.dtype)
        return total

    @staticmethod
    def backward(ctx, grad_total):
        grad_states, grad_weight, grad_bias = ctx.saved_tensors
        weight_dtype, bias_dtype = ctx.dtypes
        return (
            None if grad_states is None else grad_states * grad_total.to(grad_states.dtype),
            None if grad_weight is None else (grad_weight * grad_total).to(weight_dtype),
            None if grad_bias is None else (grad_bias * grad_total).to(bias_dtype),
            None,
            None,
            None,
        )


def supervised_loss_sum(
    hidden: torch.Tensor, labels: torch.Tensor, head: torch.nn.Linear, chunk: int | None = None
) -> torch.Tensor:
    """Sum of next-token cross-entropies over supervised positions. `hidden`: (batch, seq, dim)
    final hidden states; `labels`: (batch, seq), IGNORE_INDEX where not trained."""
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    states, targets = hidden[:, :-1][keep], targets[keep]
    want_grads = torch.is_grad_enabled() and (states.requires_grad or head.weight.requires_grad)
    return _FusedLinearCrossEntropy.apply(states, head.weight, head.bias, targets, chunk or CHUNK_TOKENS, want_grads)


def lean_causal_lm_loss(model, inputs: dict, num_items_in_batch) -> torch.Tensor:
    """The loss of `model` (unwrapped or wrapped by DDP/DeepSpeed/PEFT) on `inputs`, divided
    by `num_items_in_batch` (the step's supervised tokens) like the plain loss, or by this
    batch's own supervised tokens when it is not given."""
    inner = model.module if hasattr(model, "module") else model
    causal_lm = inner.get_base_model() if hasattr(inner, "get_base_model") else inner
    head = causal_lm.get_output_embeddings()
    labels = inputs["labels"]
    with _head_computes_loss(head, labels):
        total = model(**{k: v for k, v in inputs.items() if k != "labels"}).logits
    count = num_items_in_batch if num_items_in_batch is not None else (labels[:, 1:] != IGNORE_INDEX).sum()
    return total / count
