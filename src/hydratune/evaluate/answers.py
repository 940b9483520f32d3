"""Numeric answers out of generated text, as the common GSM8K harnesses score them.

strict:   the number right after the first `####` (the format GSM8K answers are trained in)
flexible: the last number anywhere in the text
Both normalize `$1,234.50.` to 1234.5 and compare numerically.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_STRICT = re.compile(r"####\s*\$?\s*(-?[\d,]*\.?\d+)")
_NUMBER = re.compile(r"-?\$?\s?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def normalize(text: str) -> Decimal | None:
    cleaned = text.replace(",", "").replace("$", "").replace(" ", "").rstrip(".")
    try:
        return Decimal(cleaned).normalize()
    except InvalidOperation:
        return None


def strict_answer(text: str) -> Decimal | None:
    match = _STRICT.search(text)
    return normalize(match.group(1)) if match else None


def flexible_answer(text: str) -> Decimal | None:
    numbers = _NUMBER.findall(text)
    return normalize(numbers[-1]) if numbers else None


def gold_answer(answer_field: str) -> Decimal:
    """GSM8K's reference: the number after `####` in its worked answer."""
    gold = strict_answer(answer_field)
    if gold is None:
        raise ValueError(f"no '#### <number>' in the reference answer: {answer_field[-80:]!r}")
    return gold


def as_text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")
