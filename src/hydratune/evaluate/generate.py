"""Batched greedy generation, fast enough to run after every training run on a CPU.

Prompts are sorted by length (little padding), left-padded, decoded greedily, and
every sequence stops at its end-of-turn token. vLLM is used instead when asked for
and installed on a GPU machine.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from hydratune.models.chat_templates import stop_token_ids
from hydratune.progress import Progress

log = logging.getLogger(__name__)

Conversation = Sequence[dict[str, str]]


@dataclass(frozen=True)
class Generations:
    texts: list[str]
    seconds: float

    @property
    def per_second(self) -> float:
        return len(self.texts) / self.seconds if self.seconds else 0.0


@torch.no_grad()
def generate_hf(
    model,
    tokenizer,
    conversations: Sequence[Conversation],
    *,
    max_new_tokens: int,
    batch_size: int,
    label: str = "generating",
) -> Generations:
    start = time.perf_counter()
    progress = Progress(log, label, "problems", total=len(conversations))
    model.eval()
    prompts = [
        tokenizer.apply_chat_template(list(c), add_generation_prompt=True, tokenize=False) for c in conversations
    ]
    encoded = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    stops, pad = stop_token_ids(tokenizer), tokenizer.pad_token_id
    device = next(model.parameters()).device
    texts: list[str] = [""] * len(encoded)
    for first in range(0, len(order), batch_size):
        batch = order[first : first + batch_size]
        width = max(len(encoded[i]) for i in batch)
        ids = torch.tensor([[pad] * (width - len(encoded[i])) + encoded[i] for i in batch], device=device)
        mask = torch.tensor([[0] * (width - len(encoded[i])) + [1] * len(encoded[i]) for i in batch], device=device)
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=stops,
            pad_token_id=pad,
        )
        for row, i in enumerate(batch):
            texts[i] = tokenizer.decode(out[row, width:], skip_special_tokens=True).strip()
        progress.update(first + len(batch))
    progress.finish()
    return Generations(texts, time.perf_counter() - start)


def generate_vllm(
    model_dir: Path, conversations: Sequence[Conversation], *, max_new_tokens: int, trust_remote_code: bool = False
) -> Generations:
    """vLLM over a merged model directory (continuous batching, paged attention). The engine is
    shut down before this returns: the tuned and the base model's evaluations each open one, and
    each takes most of the GPU's memory (vLLM's gpu_memory_utilization), so two cannot coexist."""
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams

    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
    params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, stop_token_ids=stop_token_ids(tokenizer))
    llm = LLM(model=str(model_dir), trust_remote_code=trust_remote_code)
    try:
        outputs = llm.chat([list(c) for c in conversations], params, use_tqdm=False)
        texts = [o.outputs[0].text.strip() for o in outputs]
    finally:
        del llm  # this function holds the only reference; the engine's own cycles go at the collection below
        free_vllm_memory()
    return Generations(texts, time.perf_counter() - start)


def free_vllm_memory() -> None:
    """What vLLM documents for freeing a deleted engine's GPU memory: its model-parallel state
    destroyed, the engine's reference cycles collected, torch's cached blocks returned to the GPU.
    The torch.distributed process group is left alone: in a launched run it is training's."""
    import gc

    try:
        from vllm.distributed.parallel_state import destroy_model_parallel
    except ImportError:  # a vLLM without it: collecting and emptying the cache still frees the engine
        destroy_model_parallel = None
    if destroy_model_parallel is not None:
        destroy_model_parallel()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
