"""Numeric answers out of generated text: one reader for every reward and for evaluation.

strict:    the number right after the first `####` followed by one (the format GSM8K answers
           are trained in); `answer_line_end` says where that number ends, for gsm8k_format
flexible:  the last number anywhere in the text
reference: a reference answer as datasets write it: GSM8K's worked answer ending in `#### N`,
           or the number alone (`72`, `$1,234.50`, `-5`)

What a number is, decided once here (tests/rewards/test_answer_table.py holds the table):
- `$` and thousands commas are dropped: `$1,234.50` is 1234.5;
- a minus is `-` or the Unicode minus (U+2212), before or after `$`: `-$5`, `$-5`, `−5` are -5;
- a fraction of whole numbers is its value where that has a finite decimal (`5/2` is 2.5, right
  only against a reference of 2.5); `1/3` and `5/0` are no number;
- a dash right after a digit (`5-7 people`, `5 - 7`) or a letter (`COVID-19`) is a range, an
  operator or a hyphen, not a sign: the last number of `5-7 people` is 7 (a range is read as
  its last number, as flexible reading takes the last number of any text).
Numbers compare by value: `#### 8.0` is right against 8.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction

_SIGN = "-\u2212"  # ASCII hyphen-minus and the Unicode minus sign
_NUMBER = (
    rf"(?P<sign>[{_SIGN}])?[ \t]*(?:\$[ \t]*(?P<sign_after>[{_SIGN}])?[ \t]*)?"
    r"(?:(?<!/)(?P<numerator>\d+)/(?P<denominator>\d+)(?![\d/]|\.\d)|(?P<decimal>\d[\d,]*(?:\.\d+)?|\.\d+))"
)
_ANY = re.compile(_NUMBER)
_STRICT = re.compile(rf"####\s*{_NUMBER}")
_ONLY = re.compile(rf"\s*{_NUMBER}\s*\.?\s*")


def _value(match: re.Match[str]) -> Decimal | None:
    """The number a match of `_NUMBER` reads, or None (a fraction with no finite decimal)."""
    negative = bool(match["sign_after"])
    if match["sign"] and not _dash_is_no_sign(match.string, match.start("sign")):
        if negative:
            return None  # two signs: no number as written
        negative = True
    if match["decimal"] is not None:
        magnitude = Decimal(match["decimal"].replace(",", ""))
    else:
        magnitude = _finite_decimal(int(match["numerator"]), int(match["denominator"]))
        if magnitude is None:
            return None
    return (-magnitude if negative else magnitude).normalize()


def _dash_is_no_sign(text: str, at: int) -> bool:
    """A dash right after a letter (`COVID-19`), or after a digit or `)` with only spaces between
    (`5-7`, `5 - 7`), is a hyphen, a range or an operator."""
    before = text[:at]
    last = before.rstrip(" \t")[-1:]  # across spaces, not lines: a line may start with `-5`
    return before[-1:].isalpha() or last.isdigit() or last == ")"


def _finite_decimal(numerator: int, denominator: int) -> Decimal | None:
    if denominator == 0:
        return None
    exact = Fraction(numerator, denominator)
    rest = exact.denominator
    for factor in (2, 5):
        while rest % factor == 0:
            rest //= factor
    if rest != 1:
        return None  # 1/3: no decimal writes it exactly
    try:
        return Decimal(exact.numerator) / Decimal(exact.denominator)
    except InvalidOperation:
        return None


def strict_answer(text: str) -> Decimal | None:
    match = _STRICT.search(text)
    return _value(match) if match else None


def answer_line_end(text: str) -> int | None:
    """Where the number strict reading takes ends in `text` (None: no `#### <number>`)."""
    match = _STRICT.search(text)
    return match.end() if match and _value(match) is not None else None


def flexible_answer(text: str) -> Decimal | None:
    """The text's last number; None where there is none, or where the last is no number (`1/3`)."""
    numbers = list(_ANY.finditer(text))
    return _value(numbers[-1]) if numbers else None


def reference_answer(answer_field: str) -> Decimal | None:
    """A reference answer: the number after `####` in a worked answer, or a bare number; None when neither."""
    if "####" in answer_field:
        return strict_answer(answer_field)
    match = _ONLY.fullmatch(answer_field)
    return _value(match) if match else None


def gold_answer(answer_field: str) -> Decimal:
    """GSM8K's reference: the number after `####` in its worked answer."""
    gold = strict_answer(answer_field)
    if gold is None:
        raise ValueError(f"no '#### <number>' in the reference answer: {answer_field[-80:]!r}")
    return gold


def as_text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")
