"""The SFT loss alone, forward and backward, on SmolLM2-135M's head shape: the model's plain
loss over every position, chunks recomputed in backward (activation checkpointing), and
hydratune's chunked loss with each chunk's gradient made in the forward pass.

    python bench/loss_kernel.py [--tokens 2048] [--supervised 0.75]

Final hidden states of `--tokens` positions (576 wide, fp32), a frozen 49,152-row head (as
under LoRA), `--supervised` of the positions trained. Best of 4 after a warm-up; prints JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from hydratune.data.tokenize_examples import IGNORE_INDEX
from hydratune.training.lean_loss import supervised_loss_sum
from hydratune.training.support_matrix import CHUNK_TOKENS

HIDDEN, VOCAB = 576, 49152


def plain(hidden, labels, head):
    return F.cross_entropy(head(hidden).float()[0, :-1], labels[0, 1:], reduction="sum", ignore_index=IGNORE_INDEX)


def recomputed(hidden, labels, head):
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    states, targets = hidden[:, :-1][keep], targets[keep]
    total = hidden.new_zeros(())
    for start in range(0, targets.numel(), CHUNK_TOKENS):
        part = slice(start, start + CHUNK_TOKENS)
        total = total + checkpoint(
            lambda s, w, t: F.cross_entropy(F.linear(s, w).float(), t, reduction="sum"),
            states[part],
            head.weight,
            targets[part],
            use_reentrant=False,
        )
    return total


def best_seconds(loss_fn, hidden, labels, head, repeats: int = 4) -> tuple[float, torch.Tensor]:
    times = []
    for _ in range(repeats + 1):
        hidden.grad = None
        start = time.perf_counter()
        loss_fn(hidden, labels, head).backward()
        times.append(time.perf_counter() - start)
    return min(times[1:]), hidden.grad.clone()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--supervised", type=float, default=0.75)
    args = parser.parse_args()
    torch.manual_seed(0)
    head = torch.nn.Linear(HIDDEN, VOCAB, bias=False).requires_grad_(False)
    hidden = torch.randn(1, args.tokens, HIDDEN, requires_grad=True)
    labels = torch.randint(0, VOCAB, (1, args.tokens))
    labels[:, : int(args.tokens * (1 - args.supervised))] = IGNORE_INDEX
    sides = {
        "plain (every position)": plain,
        "chunked, recomputed in backward": recomputed,
        "hydratune chunked, gradients in forward": supervised_loss_sum,
    }
    results, reference = {}, None
    for name, fn in sides.items():
        seconds, grad = best_seconds(fn, hidden, labels, head)
        reference = grad if reference is None else reference
        results[name] = {"seconds": seconds, "max_abs_grad_diff_vs_plain": float((grad - reference).abs().max())}
    base = results["plain (every position)"]["seconds"]
    for r in results.values():
        r["speed_vs_plain"] = base / r["seconds"]
    print(
        json.dumps(
            {"tokens": args.tokens, "supervised": args.supervised, "chunk": CHUNK_TOKENS, "sides": results}, indent=2
        )
    )


if __name__ == "__main__":
    main()
