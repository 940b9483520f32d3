"""1 when the last number anywhere in the completion equals the reference answer's number, else 0.

Kinder than gsm8k_correct early on, when the model has the arithmetic but not yet the format.
"""

from __future__ import annotations

from typing import Any, Sequence

from hydratune.rewards.answers import flexible_answer, reference_answer


def gsm8k_correct_flexible(completions: Sequence[str], answer: Sequence[str], **_: Any) -> list[float]:
    out = []
    for completion, reference in zip(completions, answer):
        got, gold = flexible_answer(completion), reference_answer(reference)
        out.append(float(got is not None and gold is not None and got == gold))
    return out
