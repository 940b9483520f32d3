"""Errors about the data itself, naming the file and line or row and the fix."""

from __future__ import annotations

from hydratune.errors import HydratuneError


class DataError(HydratuneError):
    """Bad input data. `what` names the file:line or row; `fix` says what to do."""

    def __init__(self, what: str, fix: str = ""):
        self.what, self.fix = what, fix
        super().__init__(f"{what} ({fix})" if fix else what)

    def describe(self) -> str:
        return f"Data error: {self}"


class RowError(DataError):
    """A malformed row. With `dataset.bad_rows=drop` it is counted under `reason` instead."""

    def __init__(self, reason: str, what: str, fix: str = ""):
        self.reason = reason
        super().__init__(what, fix)
