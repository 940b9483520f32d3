"""GSM8K: grade-school math word problems, scored by exact match of the final number.

Two scores, as the common harnesses report: strict (the number after `####`) and
flexible (the last number in the reply). Zero-shot with the chat template by
default; n-shot puts worked train-split examples before the problem as earlier turns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from hydratune.config.spec import Gsm8kTaskSpec
from hydratune.data.sources import open_split
from hydratune.evaluate.tasks import Question, Task
from hydratune.rewards.answers import (
    as_text,
    flexible_answer,
    gold_answer,
    strict_answer,
)


def _rows(options: Gsm8kTaskSpec, split: str, cache_root: Path, limit: Optional[int]) -> list[Question]:

    problems = []
    for row in open_split(options.path, split, config_name=options.config_name, cache_root=cache_root).read():
        if limit is not None and len(problems) >= limit:
            break
        question, answer = row.data["question"], row.data["answer"]
        problems.append(
            Question(
                question,
                gold_answer(answer),
                {"question": question, "gold": as_text(gold_answer(answer)), "answer": answer},
            )
        )
    return problems


def load_problems(options: Gsm8kTaskSpec, cache_root: Path) -> list[Question]:
    return _rows(options, options.split, cache_root, options.max_samples)


def load_shots(options: Gsm8kTaskSpec, cache_root: Path) -> list[Question]:
    return _rows(options, options.shots_split, cache_root, options.num_shots) if options.num_shots else []


def build_prompt(problem: Question, shots: Sequence[Question], system_prompt: Optional[str]) -> list[dict[str, str]]:
    turns = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for shot in shots:
        turns += [{"role": "user", "content": shot.question}, {"role": "assistant", "content": shot.record["answer"]}]
    return turns + [{"role": "user", "content": problem.question}]


def score(reply: str, problem: Question) -> dict[str, Any]:
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
    parsings={
        "strict": ("strict_accuracy", "extracted_strict"),
        "flexible": ("flexible_accuracy", "extracted_flexible"),
    },
)
