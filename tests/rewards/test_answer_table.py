"""One table of answers, read alike by every reward and by the evaluation's GSM8K scorer.

Each row: a completion, the number strict reading takes from it (after `####`), and the number
flexible reading takes (the last number). The decisions (src/hydratune/rewards/answers.py):
`$` and `,` are dropped; a Unicode minus (U+2212) is a minus, on either side of `$`; a fraction
of whole numbers is its value when that has a finite decimal (`5/2` is 2.5), else no number
(`1/3`, `5/0`); a dash right after a digit (`5-7`, `5 - 7`) or a letter (`COVID-19`) is a range
or an operator, not a sign, so the last number of `5-7 people` is 7.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from hydratune.evaluate.tasks import Question
from hydratune.evaluate.tasks.gsm8k import score
from hydratune.rewards import REWARDS

TABLE = [
    ("so 2 + 3 = 5\n#### 5", "5", "5"),
    ("#### -$5", "-5", "-5"),
    ("#### $-5", "-5", "-5"),
    ("#### \u22125", "-5", "-5"),
    ("#### \u2212$5", "-5", "-5"),
    ("#### - 5", "-5", "-5"),
    ("#### $1,234.50", "1234.5", "1234.5"),
    ("#### 1,00", "100", "100"),
    ("#### .5", "0.5", "0.5"),
    ("####72", "72", "72"),
    ("#### 12 apples", "12", "12"),
    ("#### 5/2", "2.5", "2.5"),
    ("Each gets 1/3 of it.\n#### 1/3", None, None),
    ("#### 5/0", None, None),
    ("Half is 48/2 = <<48/2=24>>24 clips.\n#### 24", "24", "24"),
    ("#### 12\nthen more: 99\n#### 99", "12", "99"),
    ("We need 5-7 people.", None, "7"),
    ("It is 5 - 7 days away.", None, "7"),
    ("The season 2020-2021", None, "2021"),
    ("Due 12/25/2020, it costs 7", None, "7"),
    ("It was 12/25/2020", None, "2020"),  # a date is no fraction
    ("A COVID-19 test", None, "19"),
    ("It fell to -7 degrees.", None, "-7"),
    ("It is between 5 and \u22127.", None, "-7"),
    ("The change is -$3.25.", None, "-3.25"),
    ("It costs 18 dollars.", None, "18"),
    ("answer: 40.", None, "40"),
    ("#### twelve", None, None),
    ("I don't know.", None, None),
]


def _decimal(text: str) -> Decimal:
    return Decimal(text)


@pytest.mark.parametrize("completion,strict,flexible", TABLE)
def test_every_reward_and_the_evaluation_read_the_table_alike(completion, strict, flexible):
    scored = score(completion, Question("q", _decimal(strict or flexible or "0"), {}))
    assert (scored["extracted_strict"], scored["extracted_flexible"]) == (strict, flexible)
    other = "123456789"  # a reference no row's answer equals
    for name, read in (("gsm8k_correct", strict), ("gsm8k_correct_flexible", flexible)):
        if read is not None:  # right against the number read, as a worked answer or a bare number
            assert REWARDS[name]([completion] * 2, answer=[f"#### {read}", read]) == [1.0, 1.0]
        assert REWARDS[name]([completion], answer=[other]) == [0.0]
    (formatted,) = REWARDS["gsm8k_format"]([completion])
    assert (formatted > 0) == (strict is not None)  # an answer line exactly where strict reads one


def test_a_dash_starting_a_line_is_a_sign():
    score_of = score("12 apples\n-5 degrees", Question("q", Decimal("-5"), {}))
    assert score_of["extracted_flexible"] == "-5"
