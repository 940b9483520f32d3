"""1 when the completion ends with a `#### <number>` line and nothing after it, 0.5 when the
line is there but text follows it, else 0."""

from __future__ import annotations

import re
from typing import Any, Sequence

_FINAL_LINE = re.compile(r"####\s*\$?\s*-?[\d,]*\.?\d+\s*$")
_ANY_LINE = re.compile(r"####\s*\$?\s*-?[\d,]*\.?\d+")


def gsm8k_format(completions: Sequence[str], **_: Any) -> list[float]:
    return [1.0 if _FINAL_LINE.search(c) else 0.5 if _ANY_LINE.search(c) else 0.0 for c in completions]
