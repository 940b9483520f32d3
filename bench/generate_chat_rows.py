"""Generated chat rows for the preprocessing benchmark: OpenAI messages, 1 to 3 turns, with
lengths like UltraChat's (a user turn of ~40-120 words, an assistant reply of ~100-300).

    python bench/generate_chat_rows.py 20000 bench/generated/chat_20000.jsonl

Deterministic: the same count gives the same file.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at which but have an they you "
    "were "
    "her she there been one all we their has would when if so no will more can what about out up them some could into "
    "only "
    "time other than then now its also two first any new like our these may after most over such years where people "
    "way "
    "model data train value number answer question step result because each between while example however system "
    "method "
    "function memory process table shape token layer batch rate loss weight update gradient sample average total"
).split()


def sentence(rng: random.Random, words: int) -> str:
    body = " ".join(rng.choice(WORDS) for _ in range(words))
    return body[0].upper() + body[1:] + rng.choice([".", ".", ".", "?", "!"])


def text(rng: random.Random, low: int, high: int) -> str:
    target, out = rng.randint(low, high), []
    while sum(len(s.split()) for s in out) < target:
        out.append(sentence(rng, rng.randint(6, 18)))
    return " ".join(out)


def row(rng: random.Random) -> dict:
    messages = []
    for _ in range(rng.randint(1, 3)):
        messages.append({"role": "user", "content": text(rng, 40, 120)})
        messages.append({"role": "assistant", "content": text(rng, 100, 300)})
    return {"messages": messages}


def write_rows(count: int, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(count)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as fh:
        for _ in range(count):
            fh.write(json.dumps(row(rng)) + "\n")
    tmp.replace(path)
    return path


if __name__ == "__main__":
    write_rows(int(sys.argv[1]), Path(sys.argv[2]))
