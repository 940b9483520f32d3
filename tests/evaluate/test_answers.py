"""Answer extraction on tricky strings, and the scorer against hand-computed results."""

from __future__ import annotations

from decimal import Decimal

import pytest

from hydratune.evaluate.statistics import mcnemar_exact, wilson_interval
from hydratune.evaluate.tasks import Question
from hydratune.evaluate.tasks.gsm8k import score
from hydratune.rewards.answers import flexible_answer, gold_answer, reference_answer, strict_answer


@pytest.mark.parametrize(
    "text,strict,flexible",
    [
        ("so 2 + 3 = 5\n#### 5", "5", "5"),
        ("#### 1,234", "1234", "1234"),
        ("The total is $1,234.50.\n#### $1,234.50", "1234.5", "1234.5"),
        ("It costs 18 dollars.", None, "18"),
        ("#### -7", "-7", "-7"),
        ("The change is -3.25 dollars.", None, "-3.25"),
        ("#### 0.5", "0.5", "0.5"),
        ("#### 12\nthen more text: 99\n#### 99", "12", "99"),
        ("I don't know.", None, None),
        ("#### twelve", None, None),
        ("answer: 40.", None, "40"),
        ("####72", "72", "72"),
        ("#### \u22125", "-5", "-5"),  # a Unicode minus
        ("It is \u22123.5 degrees.\n#### -$3.5", "-3.5", "-3.5"),
        ("#### $-12", "-12", "-12"),
    ],
)
def test_extraction(text, strict, flexible):
    as_str = lambda d: None if d is None else format(d, "f")  # noqa: E731
    assert as_str(strict_answer(text)) == strict
    assert as_str(flexible_answer(text)) == flexible


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 72", "72"),  # GSM8K's worked answer
        ("72", "72"),
        (" 72. ", "72"),
        ("$1,234.50", "1234.5"),
        ("\u22125", "-5"),
        ("-$5", "-5"),  # a bare number
        ("seventy-two", None),
        ("about 72", None),
        ("", None),
    ],
)
def test_reference_answers_are_worked_answers_or_bare_numbers(text, expected):
    got = reference_answer(text)
    assert (None if got is None else format(got, "f")) == expected


def test_gold_answer_and_numeric_equality():
    assert gold_answer("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 72") == Decimal("72")
    assert strict_answer("#### 72.00") == gold_answer("#### 72")
    with pytest.raises(ValueError):
        gold_answer("no marker here")


def test_scorer_on_fixed_predictions():
    gold = [Question(f"q{i}", gold_answer(f"#### {g}"), {}) for i, g in enumerate([5, 10, 3, 8, 100])]
    replies = ["#### 5", "the answer is 10", "#### 4\nactually 3", "#### 8.0", "#### 1,00"]
    scored = [score(r, p) for r, p in zip(replies, gold)]
    # strict: 5 yes, 10 no marker, 4 wrong, 8.0 == 8 yes, "1,00" -> 100 yes (commas dropped)
    assert [s["strict_accuracy"] for s in scored] == [True, False, False, True, True]
    # flexible: last number: 5, 10, 3, 8.0, 100
    assert [s["flexible_accuracy"] for s in scored] == [True, True, True, True, True]


def test_wilson_interval_hand_computed():
    low, high = wilson_interval(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == 1.0


def test_mcnemar_hand_computed():
    # discordant pairs: first right only 5 times, second right only never: p = 2 * (1/2)^5
    a = [True] * 5 + [True, False]
    b = [False] * 5 + [True, False]
    assert mcnemar_exact(a, b) == {"only_first_correct": 5, "only_second_correct": 0, "p_value": 0.0625}
    # 2 vs 1 discordant: p = 2 * (C(3,0) + C(3,1)) / 8 = 1
    assert mcnemar_exact([True, True, True, False, False], [True, False, False, False, True])["p_value"] == 1.0
