"""Reward functions for GRPO: one file per reward, registered here by name.

A reward scores each sampled completion: `fn(completions, answer, **kwargs) -> list[float]`,
where a completion is its text and `answer` is the row's reference answer (the final
assistant reply of a conversational row, or format=prompt's `answer` field). Add your own
without editing the package: write such a function in an importable module and list it
as `method.rewards=[gsm8k_correct, my_module:my_reward]`.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from hydratune.config.problems import Problem
from hydratune.config.registry import choice_problem, resolve
from hydratune.config.spec import RunSpec
from hydratune.rewards.answers import reference_answer
from hydratune.rewards.gsm8k_correct import gsm8k_correct
from hydratune.rewards.gsm8k_correct_flexible import gsm8k_correct_flexible
from hydratune.rewards.gsm8k_format import gsm8k_format
from hydratune.rewards.length_penalty import length_penalty

Reward = Callable[..., list[float]]

REWARDS: dict[str, Reward] = {
    "gsm8k_correct": gsm8k_correct,
    "gsm8k_correct_flexible": gsm8k_correct_flexible,
    "gsm8k_format": gsm8k_format,
    "length_penalty": length_penalty,
}


# The rewards that read the row's reference `answer`, with how they read it: a prompt whose
# reference they cannot read would score 0 on every completion, with no signal to learn from.
READS_REFERENCE: dict[str, Callable[[str], Any]] = {
    "gsm8k_correct": reference_answer,
    "gsm8k_correct_flexible": reference_answer,
}


def unreadable_references(names: Sequence[str], answers: Sequence[str]) -> list[int]:
    """Positions of the answers that some chosen reward cannot read as a reference."""
    readers = {READS_REFERENCE[name] for name in names if name in READS_REFERENCE}
    return [i for i, answer in enumerate(answers) if any(read(answer or "") is None for read in readers)]


def resolve_reward(name: str) -> Reward:
    return resolve("method.rewards", name, REWARDS)


def reward_problems(spec: RunSpec) -> list[Problem]:
    """The rewards stage's check of a spec: GRPO's rewards are known or import, one weight each."""
    m = spec.method
    if m.name != "grpo":
        return []
    out = [problem for name in m.rewards if (problem := choice_problem("method.rewards", name, REWARDS)) is not None]
    if not m.rewards:
        out.append(
            Problem("method.rewards", "GRPO needs at least one reward", f"e.g. method.rewards=[{', '.join(REWARDS)}]")
        )
    if m.reward_weights and len(m.reward_weights) != len(m.rewards):
        out.append(
            Problem(
                "method.reward_weights",
                f"{len(m.reward_weights)} weights for {len(m.rewards)} rewards",
                "give one weight per reward, or method.reward_weights=[] for all 1",
            )
        )
    return out


def completion_text(completion: Any) -> str:
    """TRL passes a conversational completion as [{role: assistant, content}]; plain ones as text."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content", "") for m in completion if isinstance(m, dict))


def for_trainer(name: str) -> Callable[..., list[float]]:
    """The reward as TRL's GRPOTrainer calls it (prompts, completions, completion_ids, **columns),
    named so its mean and spread are logged as rewards/<name>/..."""
    fn = resolve_reward(name)

    def reward(prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        return [float(r) for r in fn([completion_text(c) for c in completions], **columns)]

    reward.__name__ = name.rpartition(":")[2]
    return reward
