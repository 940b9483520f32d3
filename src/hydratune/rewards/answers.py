"""Numeric answers out of generated text, as the common GSM8K harnesses score them.

strict:    the number right after the first `####` (the format GSM8K answers are trained in)
flexible:  the last number anywhere in the text
reference: a reference answer as datasets write it: GSM8K's worked answer ending in `#### N`,
           or the number alone (`72`, `$1,234.50`, `-5`)
All normalize `$1,234.50.` to 1234.5, read a Unicode minus (U+2212) and a sign on either
side of `$` (`-$5`, `$-5`), and compare numerically.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_MINUS = "-\u2212"  # ASCII hyphen-minus and the Unicode minus sign
_SIGNED = rf"[{_MINUS}]?\s*\$?\s*[{_MINUS}]?"  # a sign before or after the dollar sign
_STRICT = re.compile(rf"####\s*({_SIGNED}[\d,]*\.?\d+)")
_NUMBER = re.compile(rf"[{_MINUS}]?\$?[{_MINUS}]?\s?\d[\d,]*(?:\.\d+)?|[{_MINUS}]?\.\d+")
_ONLY_NUMBER = re.compile(rf"^\s*({_SIGNED}[\d,]*\.?\d+)\s*\.?\s*$")


def normalize(text: str) -> Decimal | None:
    cleaned = text.replace("\u2212", "-").replace(",", "").replace("$", "").replace(" ", "").rstrip(".")
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


def reference_answer(answer_field: str) -> Decimal | None:
    """A reference answer: the number after `####` in a worked answer, or a bare number; None when neither."""
    if "####" in answer_field:
        return strict_answer(answer_field)
    match = _ONLY_NUMBER.match(answer_field)
    return normalize(match.group(1)) if match else None


def gold_answer(answer_field: str) -> Decimal:
    """GSM8K's reference: the number after `####` in its worked answer."""
    gold = strict_answer(answer_field)
    if gold is None:
        raise ValueError(f"no '#### <number>' in the reference answer: {answer_field[-80:]!r}")
    return gold


def as_text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")
