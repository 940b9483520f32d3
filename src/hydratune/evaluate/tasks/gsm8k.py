"""GSM8K: grade-school math word problems, scored by exact match of the final number.

Two scores, as the common harnesses report: strict (the number after `####`) and
flexible (the last number in the reply). Zero-shot with the chat template by
default; n-shot puts worked train-split examples before the problem as earlier turns.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

from hydratune.config.spec import knob
from hydratune.evaluate.answers import as_text, flexible_answer, gold_answer, strict_answer
from hydratune.evaluate.tasks import Problem, Task


@dataclass(frozen=True)
class Gsm8kTaskSpec:
    path: str = knob("openai/gsm8k", "GSM8K: the Hub name, or a local file or folder (train/test files).")
    config_name: Optional[str] = knob("main", "Hub configuration.")
    split: str = knob("test", "Split scored.")
    shots_split: str = knob("train", "Split the n-shot examples come from.")
    max_samples: Optional[int] = knob(None, "Score at most this many problems (the first ones).", ge=1)
    num_shots: int = knob(0, "Worked examples shown before each problem.", ge=0, le=8)
    max_new_tokens: int = knob(256, "Generation budget per problem.", ge=1)
    batch_size: int = knob(16, "Problems generated together.", ge=1)
    backend: Literal["hf", "vllm"] = knob("hf", "Generation engine; vllm needs vllm installed and a GPU.")


def _rows(options: Gsm8kTaskSpec, split: str, cache_root: Path, limit: Optional[int]) -> list[Problem]:
    from hydratune.data.sources import open_split

    problems = []
    for row in open_split(options.path, split, config_name=options.config_name, cache_root=cache_root).read():
        if limit is not None and len(problems) >= limit:
            break
        question, answer = row.data["question"], row.data["answer"]
        problems.append(Problem(question, gold_answer(answer), {"question": question, "gold": as_text(gold_answer(answer)), "answer": answer}))
    return problems


def load_problems(options: Gsm8kTaskSpec, cache_root: Path) -> list[Problem]:
    return _rows(options, options.split, cache_root, options.max_samples)


def load_shots(options: Gsm8kTaskSpec, cache_root: Path) -> list[Problem]:
    return _rows(options, options.shots_split, cache_root, options.num_shots) if options.num_shots else []


def build_prompt(problem: Problem, shots: Sequence[Problem], system_prompt: Optional[str]) -> list[dict[str, str]]:
    turns = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for shot in shots:
        turns += [{"role": "user", "content": shot.question}, {"role": "assistant", "content": shot.record["answer"]}]
    return turns + [{"role": "user", "content": problem.question}]


def score(reply: str, problem: Problem) -> dict[str, Any]:
    strict, flexible = strict_answer(reply), flexible_answer(reply)
    return {
        "strict_accuracy": strict is not None and strict == problem.gold,
        "flexible_accuracy": flexible is not None and flexible == problem.gold,
        "extracted_strict": as_text(strict),
        "extracted_flexible": as_text(flexible),
    }


TASK = Task(
    name="gsm8k",
    options=Gsm8kTaskSpec,
    metrics=("strict_accuracy", "flexible_accuracy"),
    higher_is_better=True,
    load_problems=load_problems,
    load_shots=load_shots,
    build_prompt=build_prompt,
    score=score,
)
