"""Generated multi-step arithmetic word problems in GSM8K's format, for offline runs.

Seeded and deterministic: `generated:arithmetic` always yields the same rows. Each
answer is a worked solution with GSM8K-style `<<a*b=c>>` annotations and a final
`#### N` line. This is a smoke-test dataset for the offline quickstart, not a
benchmark; GSM8K itself is the benchmark.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Callable

from hydratune.atomic_dir import build_once
from hydratune.cache_dirs import cache_root as default_root
from hydratune.data.errors import DataError

GENERATOR_VERSION = 1
SPLITS = {"train": (2000, 1234), "test": (200, 5678)}  # rows, seed

NAMES = ["Ava", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi", "Liam"]
ITEMS = [
    ("pencil", "pencils"),
    ("apple", "apples"),
    ("notebook", "notebooks"),
    ("ticket", "tickets"),
    ("cookie", "cookies"),
    ("marble", "marbles"),
]


# A worked solution as a function of its first step's result (a wrong one is carried through),
# an offset on its second step's result, and whether the second step misreads a count.
Solution = Callable[..., str]


def _problem(rng: random.Random) -> tuple[str, Solution, int]:
    """A question, its worked answer as a function of the first step's result, and that result.

    The answer function also takes `second_offset` (the second step's result off by that much) and `misread` (the
    second step uses a count as the question states it instead of as it is meant). Defaults give the correct
    solution; the others the rejected side of a preference pair: one wrong step, carried to a wrong final answer."""
    name = rng.choice(NAMES)
    item, items = rng.choice(ITEMS)
    kind = rng.randrange(3)
    if kind == 0:  # buy, pay, change
        price, count = rng.randint(2, 9), rng.randint(2, 8)
        cost = price * count
        bill = next(b for b in (10, 20, 50, 100) if b >= cost)
        question = (
            f"{name} buys {count} {items} that cost ${price} each and pays with a ${bill} bill. How much change does "
            f"{name} get?"
        )

        def change(c: int, second_offset: int = 0, misread: bool = False) -> str:
            rest = bill - c + second_offset
            return (
                f"The {items} cost {count} * {price} = <<{count}*{price}={c}>>{c} dollars.\n"
                f"The change is {bill} - {c} = <<{bill}-{c}={rest}>>{rest} dollars.\n#### {rest}"
            )

        return question, change, cost
    if kind == 1:  # boxes, give away
        boxes, per_box = rng.randint(2, 9), rng.randint(3, 12)
        total = boxes * per_box
        given = rng.randint(1, total - 1)
        question = (
            f"{name} has {boxes} boxes with {per_box} {items} in each box and gives away {given} {items}. How many "
            f"{items} are left?"
        )

        def left(t: int, second_offset: int = 0, misread: bool = False) -> str:
            rest = t - given + second_offset
            return (
                f"{name} has {boxes} * {per_box} = <<{boxes}*{per_box}={t}>>{t} {items}.\n"
                f"After giving some away, {t} - {given} = <<{t}-{given}={rest}>>{rest} are left.\n#### {rest}"
            )

        return question, left, total
    # daily rate over days, then share
    per_day, days, friends = rng.randint(2, 9), rng.randint(2, 7), rng.randint(2, 4)
    each = per_day * days
    question = (
        f"{name} makes {per_day} {items} a day for {days} days, and so do {friends - 1} friends. How many {items} do "
        f"they make together?"
    )

    def together(e: int, second_offset: int = 0, misread: bool = False) -> str:
        people = friends - 1 if misread else friends  # misread: the friends without the maker
        total = e * people + second_offset
        return (
            f"Each person makes {per_day} * {days} = <<{per_day}*{days}={e}>>{e} {items}.\n"
            f"Together they make {e} * {people} = <<{e}*{people}={total}>>{total} {items}.\n#### {total}"
        )

    return question, together, each


def generate(rows: int, seed: int) -> list[dict[str, str]]:
    """Question/answer rows (format qa)."""
    rng = random.Random(seed)
    out = []
    for _ in range(rows):
        question, answer, first = _problem(rng)
        out.append({"question": question, "answer": answer(first)})
    return out


def generate_preferences(rows: int, seed: int) -> list[dict[str, str]]:
    """Preference pairs (format preference): the correct worked solution is chosen; the rejected
    one has one wrong step: the first result off by a few (carried through), the second result
    off by a few, or, where the question has one, a count misread (friends without the maker).
    The questions are those of `generate(rows, seed)`; the errors come from a second seeded stream."""
    rng, errors = random.Random(seed), random.Random(seed + 1)
    offsets = [-3, -2, -1, 1, 2, 3]
    out = []
    for _ in range(rows):
        question, answer, first = _problem(rng)
        correct = answer(first)
        wrong = correct
        while wrong == correct:  # only a question with friends can be misread: elsewhere, draw again
            step = errors.randrange(3)
            if step == 0:
                wrong = answer(first + errors.choice(offsets))
            elif step == 1:
                wrong = answer(first, second_offset=errors.choice(offsets))
            else:
                wrong = answer(first, misread=True)
        out.append({"prompt": question, "chosen": correct, "rejected": wrong})
    return out


GENERATORS: dict[str, tuple[Callable[[int, int], list[dict[str, str]]], int]] = {
    "arithmetic": (generate, GENERATOR_VERSION),
    "arithmetic_preferences": (generate_preferences, 2),
}


def generated_split_file(name: str, split: str, cache_root: Path | None) -> Path:
    """Write the split once into the cache (it is small) and return its JSON-lines path."""

    if name not in GENERATORS:
        raise DataError(
            f"dataset.path=generated:{name}: unknown generator",
            f"use one of: {', '.join('generated:' + g for g in GENERATORS)}",
        )
    if split not in SPLITS:
        raise DataError(f"generated:{name} has no split '{split}'", f"use one of {', '.join(SPLITS)}")
    make, version = GENERATORS[name]
    root = (cache_root or default_root()) / "datasets" / f"{name}-v{version}"

    def build(out: Path) -> dict:
        for each, (rows, seed) in SPLITS.items():
            with open(out / f"{each}.jsonl", "w") as fh:
                for row in make(rows, seed):
                    fh.write(json.dumps(row) + "\n")
        return {"generator": name, "version": version, "splits": {k: v[0] for k, v in SPLITS.items()}}

    folder, _ = build_once(root, build)
    return folder / f"{split}.jsonl"
