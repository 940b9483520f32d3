"""The one base of every error a user can act on.

A console script catches `HydratuneError` alone: it prints `describe()` (one message that
names the key, the file and line, or the rank, and says the fix) and exits with `exit_code`,
never with a traceback. 2: the configuration or the data; 1: a training rank or a push failed.
"""

from __future__ import annotations


class HydratuneError(Exception):
    exit_code = 2

    def describe(self) -> str:
        return f"Error: {self}"
