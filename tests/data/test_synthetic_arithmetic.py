"""The generated arithmetic problems: the chosen solutions are right and the rejected ones wrong
in exactly one step, of every kind a small model gets wrong."""

from __future__ import annotations

import re
from collections import Counter

from hydratune.data.synthetic_arithmetic import generate, generate_preferences

ANNOTATION = re.compile(r"<<([\d+\-*]+)=(-?\d+)>>")


def steps(solution: str) -> list[tuple[str, int]]:
    return [(expr, int(value)) for expr, value in ANNOTATION.findall(solution)]


def final(solution: str) -> int:
    return int(solution.rsplit("#### ", 1)[1])


def test_pairs_put_the_right_solution_against_one_wrong_step_of_each_kind():
    rows, pairs = generate(2000, 1234), generate_preferences(2000, 1234)
    kinds = Counter()
    for row, pair in zip(rows, pairs):
        assert (pair["prompt"], pair["chosen"]) == (row["question"], row["answer"])
        chosen, rejected = steps(pair["chosen"]), steps(pair["rejected"])
        assert all(eval(expr) == value for expr, value in chosen)  # noqa: S307 - digits and + - * only
        assert final(pair["chosen"]) == chosen[-1][1] and final(pair["rejected"]) == rejected[-1][1]
        assert final(pair["rejected"]) != final(pair["chosen"])
        wrong = [i for i, (expr, value) in enumerate(rejected) if eval(expr) != value]  # noqa: S307
        if wrong == [0]:
            kinds["first result off, carried through"] += 1
        elif wrong == [1] and rejected[0] == chosen[0]:
            kinds["second result off"] += 1
        else:
            assert wrong == [] and rejected[0] == chosen[0] and rejected[1][0] != chosen[1][0], pair
            kinds["a count misread"] += 1
    assert set(kinds) == {"first result off, carried through", "second result off", "a count misread"}
    assert min(kinds.values()) > 200, kinds  # a misread needs a question with friends: a third of them


def test_the_generated_rows_do_not_change():
    """Cached data and the measured runs (examples/post_training/README.md) depend on these rows
    staying as they are: a change needs a new generator version."""
    import hashlib
    import json

    def digest(rows: list) -> str:
        return hashlib.md5(json.dumps(rows).encode()).hexdigest()

    assert digest(generate(2000, 1234)) == "dfc4174b759f8ed87fb19b666926ca54"
    assert digest(generate_preferences(2000, 1234)) == "c186db0c5dbc1703fccdf9680b835b97"
