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

from hydratune.data.errors import DataError

GENERATOR_VERSION = 1
SPLITS = {"train": (2000, 1234), "test": (200, 5678)}  # rows, seed

NAMES = ["Ava", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi", "Liam"]
ITEMS = [("pencil", "pencils"), ("apple", "apples"), ("notebook", "notebooks"), ("ticket", "tickets"), ("cookie", "cookies"), ("marble", "marbles")]


def _problem(rng: random.Random) -> dict[str, str]:
    name = rng.choice(NAMES)
    item, items = rng.choice(ITEMS)
    kind = rng.randrange(3)
    if kind == 0:  # buy, pay, change
        price, count = rng.randint(2, 9), rng.randint(2, 8)
        cost = price * count
        bill = next(b for b in (10, 20, 50, 100) if b >= cost)
        question = f"{name} buys {count} {items} that cost ${price} each and pays with a ${bill} bill. How much change does {name} get?"
        answer = f"The {items} cost {count} * {price} = <<{count}*{price}={cost}>>{cost} dollars.\n" \
                 f"The change is {bill} - {cost} = <<{bill}-{cost}={bill - cost}>>{bill - cost} dollars.\n#### {bill - cost}"
    elif kind == 1:  # boxes, give away
        boxes, per_box = rng.randint(2, 9), rng.randint(3, 12)
        total = boxes * per_box
        given = rng.randint(1, total - 1)
        question = f"{name} has {boxes} boxes with {per_box} {items} in each box and gives away {given} {items}. How many {items} are left?"
        answer = f"{name} has {boxes} * {per_box} = <<{boxes}*{per_box}={total}>>{total} {items}.\n" \
                 f"After giving some away, {total} - {given} = <<{total}-{given}={total - given}>>{total - given} are left.\n#### {total - given}"
    else:  # daily rate over days, then share
        per_day, days, friends = rng.randint(2, 9), rng.randint(2, 7), rng.randint(2, 4)
        total = per_day * days * friends
        each = per_day * days
        question = f"{name} makes {per_day} {items} a day for {days} days, and so do {friends - 1} friends. How many {items} do they make together?"
        answer = f"Each person makes {per_day} * {days} = <<{per_day}*{days}={each}>>{each} {items}.\n" \
                 f"Together they make {each} * {friends} = <<{each}*{friends}={total}>>{total} {items}.\n#### {total}"
    return {"question": question, "answer": answer}


def generate(rows: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    return [_problem(rng) for _ in range(rows)]


def generated_split_file(name: str, split: str, cache_root: Path | None) -> Path:
    """Write the split once into the cache (it is small) and return its JSON-lines path."""
    from hydratune.atomic_dir import build_once
    from hydratune.cache_dirs import cache_root as default_root

    if name != "arithmetic":
        raise DataError(f"dataset.path=generated:{name}: unknown generator", "use generated:arithmetic")
    if split not in SPLITS:
        raise DataError(f"generated:arithmetic has no split '{split}'", f"use one of {', '.join(SPLITS)}")
    root = (cache_root or default_root()) / "datasets" / f"arithmetic-v{GENERATOR_VERSION}"

    def build(out: Path) -> dict:
        for each, (rows, seed) in SPLITS.items():
            with open(out / f"{each}.jsonl", "w") as fh:
                for row in generate(rows, seed):
                    fh.write(json.dumps(row) + "\n")
        return {"generator": "arithmetic", "version": GENERATOR_VERSION, "splits": {k: v[0] for k, v in SPLITS.items()}}

    folder, _ = build_once(root, build)
    return folder / f"{split}.jsonl"
