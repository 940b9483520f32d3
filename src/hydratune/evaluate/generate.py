"""Batched generation, fast enough to run after every training run on a CPU.

Prompts are sorted by length (little padding), left-padded, decoded greedily (or sampled k
times each, from a fixed seed), and every sequence stops at its end-of-turn token. vLLM is
used instead when asked for and installed on a GPU machine.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from hydratune.models.chat_templates import stop_token_ids
from hydratune.progress import Progress

log = logging.getLogger(__name__)

Conversation = Sequence[dict[str, str]]


@dataclass(frozen=True)
class Generations:
    texts: list[str]
    seconds: float
    samples: Optional[list[list[str]]] = None  # with Sampling: each conversation's sampled replies

    @property
    def per_second(self) -> float:
        return len(self.texts) / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class Sampling:
    """k replies per prompt at a temperature, drawn from a seeded stream (the same prompts and
    settings draw the same replies, so a start model and its result are compared alike)."""

    num_samples: int
    temperature: float
    seed: int


@torch.no_grad()
def generate_hf(
    model,
    tokenizer,
    conversations: Sequence[Conversation],
    *,
    max_new_tokens: int,
    batch_size: int,
    label: str = "generating",
    sampling: Optional[Sampling] = None,
) -> Generations:
    """The greedy reply to each conversation and, with `sampling`, its `sampling.num_samples`
    sampled replies too. `batch_size` counts the replies generated together."""
    start = time.perf_counter()
    model.eval()
    prompts = [
        tokenizer.apply_chat_template(list(c), add_generation_prompt=True, tokenize=False) for c in conversations
    ]
    encoded = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    greedy = _replies(model, tokenizer, encoded, max_new_tokens, batch_size, None, label)
    samples = None
    if sampling:
        with torch.random.fork_rng(devices=[]):  # the caller's random stream is left as it was
            torch.manual_seed(sampling.seed)
            samples = _replies(model, tokenizer, encoded, max_new_tokens, batch_size, sampling, f"{label}, sampled")
    return Generations([r[0] for r in greedy], time.perf_counter() - start, samples=samples)


def _replies(
    model,
    tokenizer,
    encoded: list[list[int]],
    max_new_tokens: int,
    batch_size: int,
    sampling: Optional[Sampling],
    label: str,
) -> list[list[str]]:
    """Each prompt's replies, prompts of similar length batched together (little padding)."""
    progress = Progress(log, label, "problems", total=len(encoded))
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    problems_per_call = max(1, batch_size // (sampling.num_samples if sampling else 1))
    replies: list[list[str]] = [[] for _ in encoded]
    for first in range(0, len(order), problems_per_call):
        batch = order[first : first + problems_per_call]
        texts = _generate_batch(model, tokenizer, [encoded[i] for i in batch], max_new_tokens, sampling)
        for i, reply in zip(batch, texts):
            replies[i] = reply
        progress.update(first + len(batch))
    progress.finish()
    return replies


def _generate_batch(
    model, tokenizer, prompts: list[list[int]], max_new_tokens: int, sampling: Optional[Sampling]
) -> list[list[str]]:
    """Each prompt's replies (one greedy, or `sampling.num_samples` sampled), left-padded into one call."""
    stops, pad = stop_token_ids(tokenizer), tokenizer.pad_token_id
    device = next(model.parameters()).device
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    decoding = (
        {
            "do_sample": True,
            "temperature": sampling.temperature,
            "top_p": 1.0,
            "top_k": 0,
            "num_return_sequences": sampling.num_samples,
        }
        if sampling
        else {"do_sample": False}
    )
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=max_new_tokens,
        eos_token_id=stops,
        pad_token_id=pad,
        **decoding,
    )
    per_prompt = sampling.num_samples if sampling else 1  # generate returns a prompt's replies together
    texts = [tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in out]
    return [texts[i * per_prompt : (i + 1) * per_prompt] for i in range(len(prompts))]


def generate_vllm(
    model_dir: Path,
    conversations: Sequence[Conversation],
    *,
    max_new_tokens: int,
    trust_remote_code: bool = False,
    sampling: Optional[Sampling] = None,
) -> Generations:
    """vLLM over a merged model directory (continuous batching, paged attention): the greedy reply
    to each conversation and, with `sampling`, its sampled replies, from one engine. The engine is
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
        samples = None
        if sampling:
            sampled = SamplingParams(
                n=sampling.num_samples,
                temperature=sampling.temperature,
                seed=sampling.seed,
                max_tokens=max_new_tokens,
                stop_token_ids=stop_token_ids(tokenizer),
            )
            outputs = llm.chat([list(c) for c in conversations], sampled, use_tqdm=False)
            samples = [[choice.text.strip() for choice in o.outputs] for o in outputs]
    finally:
        del llm  # this function holds the only reference; the engine's own cycles go at the collection below
        free_vllm_memory()
    return Generations(texts, time.perf_counter() - start, samples=samples)


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
