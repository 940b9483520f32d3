"""Minus the completion's length in characters over 1000: a gentle push towards short answers.

Weigh it with method.reward_weights (e.g. [1.0, 0.5, 0.2] beside two other rewards).
"""

from __future__ import annotations

from typing import Any, Sequence

CHARACTERS = 1000.0


def length_penalty(completions: Sequence[str], **_: Any) -> list[float]:
    return [-len(c) / CHARACTERS for c in completions]
