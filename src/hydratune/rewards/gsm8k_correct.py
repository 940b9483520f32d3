"""1 when the number after the completion's first `####` equals the reference answer's, else 0."""

from __future__ import annotations

from typing import Any, Sequence

from hydratune.evaluate.answers import strict_answer


def gsm8k_correct(completions: Sequence[str], answer: Sequence[str], **_: Any) -> list[float]:
    return [float(_same(strict_answer(c), strict_answer(a))) for c, a in zip(completions, answer)]


def _same(got, gold) -> bool:
    return got is not None and gold is not None and got == gold
