"""GRPO's difficulty pre-pass: keep the training prompts whose rewards can differ within a group.

A group of completions that all pass or all fail has equal rewards, zero advantages and no
gradient. With method.difficulty_samples=k, the start model samples k completions of each
training prompt (the first difficulty_max_prompts of the stored, shuffled rows) at the
method's temperature and max_completion_length; a completion passes when the first of
method.rewards scores above 0, and a prompt is kept when its pass rate is strictly between
0 and 1. Training then runs on the kept prompts only.

The result (each estimated prompt's rate and the kept row indices) is cached under the cache
root, keyed on the data's key, the start model's identity (a local directory by the content of
its files), the first reward (name and source), k, temperature, max_completion_length,
difficulty_max_prompts and train.seed. It is built once with `build_once`, like the data: a
killed pre-pass leaves nothing that reads as whole, and concurrent ranks build it once and read.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from hydratune.atomic_dir import build_once, read_manifest
from hydratune.config.problems import ConfigError, Problem
from hydratune.config.spec import RunSpec
from hydratune.data.tokenize_preferences import prompt_ids
from hydratune.models.model_loading import load_base_model, model_location
from hydratune.rewards import for_trainer, resolve_reward

log = logging.getLogger(__name__)

# Bump when the same inputs give other rates (the sampling or the pass rule changed).
DIFFICULTY_VERSION = 1


@dataclass(frozen=True)
class Difficulty:
    rates: list[float]  # of the estimated prompts, the first len(rates) training rows
    kept: list[int]  # training row indices, ascending
    cache_hit: bool
    directory: Path

    def record(self) -> dict[str, Any]:
        """What run.json and the log say: how many were estimated, where their rates fell, how many were kept."""
        return {
            "estimated": len(self.rates),
            "pass_rates": histogram(self.rates),
            "kept": len(self.kept),
            "cache_hit": self.cache_hit,
            "directory": str(self.directory),
        }


def kept_prompts(rates: Sequence[float]) -> list[int]:
    """The positions of the rates strictly between 0 and 1: prompts whose groups can differ."""
    return [i for i, rate in enumerate(rates) if 0 < rate < 1]


def histogram(rates: Sequence[float]) -> dict[str, int]:
    between = len(kept_prompts(rates))
    never = sum(rate <= 0 for rate in rates)
    return {"at_0": never, "between": between, "at_1": len(rates) - never - between}


def pass_rates(passed: Sequence[bool], k: int) -> list[float]:
    """Per prompt, the share of its k consecutive completions that passed."""
    return [sum(passed[i : i + k]) / k for i in range(0, len(passed), k)]


# ---------------------------------------------------------------------- key
def model_identity(spec: RunSpec, root: Path) -> dict[str, Any]:
    """The start model as the cache key sees it: its settings, and for a local directory (a path, an
    earlier run's merged/, random weights) a digest of every file in it, so changed weights rebuild."""
    import dataclasses

    identity: dict[str, Any] = {"model": dataclasses.asdict(spec.model)}
    location = Path(model_location(spec.model, root))
    if location.is_dir():
        identity["files"] = folder_digest(location)
    return identity


def folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "manifest.json"):
        digest.update(str(path.relative_to(folder)).encode())
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


def difficulty_key(spec: RunSpec, data_key: str, root: Path) -> str:
    m = spec.method
    first = m.rewards[0]
    parts = {
        "version": DIFFICULTY_VERSION,
        "data": data_key,
        "start_model": model_identity(spec, root),
        "pass_reward": [first, inspect.getsource(resolve_reward(first))],
        "samples": m.difficulty_samples,
        "temperature": m.temperature,
        "max_completion_length": m.max_completion_length,
        "max_prompts": m.difficulty_max_prompts,
        "seed": spec.train.seed,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


# -------------------------------------------------------------------- stage
def run_difficulty(spec: RunSpec, data_key: str, train_rows, tokenizer, root: Path, precision: str) -> Difficulty:
    """Estimate (or read) the pass rates of the training prompts; ConfigError when none is kept."""
    start = time.perf_counter()
    key = difficulty_key(spec, data_key, root)
    count = min(len(train_rows), spec.method.difficulty_max_prompts or len(train_rows))

    def build(out: Path) -> dict[str, Any]:
        rates = estimate_rates(spec, train_rows.select(range(count)), tokenizer, root, precision)
        return {"key": key, "version": DIFFICULTY_VERSION, "rates": rates, "kept": kept_prompts(rates)}

    directory, built = build_once(root / "difficulty" / key[:24], build, is_valid=_whole)
    manifest = read_manifest(directory)
    result = Difficulty(manifest["rates"], manifest["kept"], cache_hit=not built, directory=directory)
    log.info(
        "difficulty: %s %s in %.2fs: %s",
        "cache hit" if result.cache_hit else "built",
        directory,
        time.perf_counter() - start,
        describe(result),
    )
    if not result.kept:
        raise nothing_kept(spec, result)
    return result


def _whole(directory: Path, manifest: dict) -> bool:
    rates, kept = manifest.get("rates"), manifest.get("kept")
    return isinstance(rates, list) and isinstance(kept, list) and kept == kept_prompts(rates)


def describe(result: Difficulty) -> str:
    h = histogram(result.rates)
    return (
        f"{len(result.rates)} prompts estimated, pass rate 0: {h['at_0']}, between: {h['between']}, "
        f"1: {h['at_1']}; {len(result.kept)} kept"
    )


def nothing_kept(spec: RunSpec, result: Difficulty) -> ConfigError:
    m = spec.method
    return ConfigError(
        [
            Problem(
                f"method.difficulty_samples={m.difficulty_samples}",
                f"the difficulty pre-pass kept no prompt ({describe(result)}): every one was always or never "
                f"solved by {spec.model.name} at temperature {m.temperature}, so GRPO would have no signal",
                "sample more (a larger method.difficulty_samples or difficulty_max_prompts), change "
                "method.temperature or method.max_completion_length, start from another model, or turn the "
                "pre-pass off with method.difficulty_samples=0",
            )
        ]
    )


# ----------------------------------------------------------------- sampling
def estimate_rates(spec: RunSpec, rows, tokenizer, root: Path, precision: str) -> list[float]:
    """Each row's pass rate over k completions sampled by the start model, a few prompts per generate call
    (about train.micro_batch_size completions, as a training micro-batch holds), in eval mode."""
    import torch

    m = spec.method
    k = m.difficulty_samples
    model = start_model(spec, root, precision)
    reward = for_trainer(m.rewards[0])
    per_call = max(1, spec.train.micro_batch_size // k)
    torch.manual_seed(spec.train.seed)
    passed: list[bool] = []
    for begin in range(0, len(rows), per_call):
        batch = rows.select(range(begin, min(begin + per_call, len(rows))))
        completions = sample(model, tokenizer, batch["prompt"], spec)
        columns = {name: [v for v in batch[name] for _ in range(k)] for name in batch.column_names if name != "prompt"}
        prompts = [p for p in batch["prompt"] for _ in range(k)]
        passed += [score > 0 for score in reward(prompts, completions, **columns)]
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the ranks, or training's own model, load next
    return pass_rates(passed, k)


def start_model(spec: RunSpec, root: Path, precision: str):
    """The model training starts from, without an adapter (one is not attached yet), for sampling."""
    import torch

    from hydratune.models.inference_placement import DTYPES

    kwargs: dict[str, Any] = {}
    cuda = torch.cuda.is_available()
    if spec.method.weights == "qlora":
        from hydratune.training.build_model import quantization_config

        kwargs["quantization_config"] = quantization_config(spec.method, precision)
    if cuda:
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))}
    dtype = torch.float32 if spec.method.weights == "full" else DTYPES[precision]
    model = load_base_model(spec.model, root, dtype=dtype, attn_implementation="sdpa", **kwargs)
    return model.eval()


def sample(model, tokenizer, prompts: list, spec: RunSpec) -> list[list[dict[str, str]]]:
    """k completions of each prompt (prompt-major), as TRL passes conversational completions to rewards:
    sampled as GRPO's transformers path samples (no top-k or top-p cut), cut at the end-of-sequence token."""
    import torch

    m = spec.method
    ids = [prompt_ids(tokenizer, p) for p in prompts]
    width = max(len(i) for i in ids)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(i)) + i for i in ids], device=model.device)
    mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids], device=model.device)
    with torch.no_grad():
        out = model.generate(
            input_ids=input_ids,
            attention_mask=mask,
            do_sample=True,
            temperature=m.temperature,
            top_k=0,
            top_p=1.0,
            max_new_tokens=m.max_completion_length,
            num_return_sequences=m.difficulty_samples,
            pad_token_id=pad,
            eos_token_id=tokenizer.eos_token_id,
        )
    texts = []
    for row in out[:, width:].tolist():
        if tokenizer.eos_token_id in row:
            row = row[: row.index(tokenizer.eos_token_id)]
        texts.append(tokenizer.decode(row, skip_special_tokens=True))
    return [[{"role": "assistant", "content": text}] for text in texts]
