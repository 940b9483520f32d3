"""1 when the number after the completion's first `####` equals the reference answer's, else 0.

The reference is GSM8K's worked answer (its number after `####`) or a bare number (`72`)."""

from __future__ import annotations

from typing import Any, Sequence

from hydratune.rewards.answers import reference_answer, strict_answer


def gsm8k_correct(completions: Sequence[str], answer: Sequence[str], **_: Any) -> list[float]:
    return [float(_same(strict_answer(c), reference_answer(a))) for c, a in zip(completions, answer)]


def _same(got, gold) -> bool:
    return got is not None and gold is not None and got == gold
