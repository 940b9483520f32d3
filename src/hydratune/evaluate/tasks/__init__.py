"""The evaluation task registry: every module in this package that defines `TASK` is a task.

Adding a task is adding one file here: its options dataclass (the `eval.tasks.<name>.*`
keys), how it loads problems, builds prompts and scores a reply.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence


@dataclass(frozen=True)
class Question:
    question: str
    gold: Any  # what `score` compares against
    record: dict[str, Any]  # written to predictions.jsonl


@dataclass(frozen=True)
class Task:
    """A task scored during training (`generative=False`, e.g. held-out loss) or by generation."""

    name: str
    options: type
    metrics: tuple[str, ...]
    higher_is_better: bool
    generative: bool = True
    # generative tasks only:
    load_problems: Optional[Callable[..., list[Question]]] = None  # (options, cache_root) -> problems
    build_prompt: Optional[Callable[..., list[dict[str, str]]]] = (
        None  # (problem, shots, system_prompt) -> conversation
    )
    load_shots: Optional[Callable[..., Sequence[Question]]] = None  # (options, cache_root) -> worked examples
    score: Optional[Callable[[str, Question], dict[str, Any]]] = None  # reply -> {metric: bool, extracted...}
    # each answer parsing's (metric, extracted answer) keys in `score`'s result: what sampled
    # replies are scored and voted by (eval.tasks.<name>.num_samples)
    parsings: dict[str, tuple[str, str]] = field(default_factory=dict)
    # or a task scored by another library on the whole model (lm-evaluation-harness):
    # (options, model_tokenizer, cache_root, system_prompt) -> {"metric_names", "predictions", "seconds", ...}
    run: Optional[Callable[..., dict[str, Any]]] = None


def _discover() -> dict[str, Task]:
    tasks = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        task = getattr(module, "TASK", None)
        if isinstance(task, Task):
            tasks[task.name] = task
    return tasks


TASKS: dict[str, Task] = _discover()
