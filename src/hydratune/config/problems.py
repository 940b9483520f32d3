"""Configuration problems, gathered and reported together.

Every check in hydratune appends a `Problem` instead of raising, so that one run
reports every mistake at once, each naming the key and the fix.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable

from hydratune.errors import HydratuneError


@dataclass(frozen=True)
class Problem:
    key: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        text = f"{self.key}: {self.message}"
        return f"{text} ({self.fix})" if self.fix else text


class ConfigError(HydratuneError):
    """Raised with every problem found; the CLI prints it and exits with code 2."""

    def __init__(self, problems: Iterable[Problem]):
        self.problems = list(problems)
        super().__init__(self.render())

    def render(self) -> str:
        n = len(self.problems)
        lines = [f"Invalid configuration: {n} problem{'s' if n != 1 else ''}"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)

    def describe(self) -> str:
        return self.render()


def raise_if_any(problems: Iterable[Problem]) -> None:
    problems = list(problems)
    if problems:
        raise ConfigError(problems)


def closest(word: str, candidates: Iterable[str]) -> str | None:
    match = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.6)
    return match[0] if match else None


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """'did you mean `X`?' for the closest candidate, or '' when nothing is close."""
    match = closest(word, candidates)
    return f"did you mean `{match}`?" if match else ""
