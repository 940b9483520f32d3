"""1 when the completion ends with the `#### <number>` line that gsm8k_correct reads and nothing
after it, 0.5 when that line is there but text follows it, else 0. What a number is, is decided
once in answers.py, so this reward sees an answer line exactly where gsm8k_correct reads one."""

from __future__ import annotations

from typing import Any, Sequence

from hydratune.rewards.answers import answer_line_end


def gsm8k_format(completions: Sequence[str], **_: Any) -> list[float]:
    return [_format(c) for c in completions]


def _format(completion: str) -> float:
    end = answer_line_end(completion)
    if end is None:
        return 0.0
    return 1.0 if not completion[end:].strip() else 0.5
