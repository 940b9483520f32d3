"""Progress lines for long work (data building, merging, evaluation): one log line every few
seconds, with the rate, and a last line with the total, so a long step never looks hung."""

from __future__ import annotations

import logging
import time
from typing import Optional


class Progress:
    def __init__(
        self, log: logging.Logger, what: str, unit: str, *, total: Optional[int] = None, every_seconds: float = 5.0
    ):
        self.log, self.what, self.unit, self.total, self.every = log, what, unit, total, every_seconds
        self.start = self.last = time.perf_counter()
        self.done = 0

    def _line(self, now: float) -> str:
        rate = self.done / (now - self.start) if now > self.start else 0.0
        count = f"{self.done:,}/{self.total:,}" if self.total is not None else f"{self.done:,}"
        return f"{self.what}: {count} {self.unit} ({rate:,.1f} {self.unit}/s)"

    def update(self, done: int) -> None:
        self.done = done
        now = time.perf_counter()
        if now - self.last >= self.every and (self.total is None or done < self.total):  # finish() says the last
            self.last = now
            self.log.info(self._line(now))

    def finish(self) -> None:
        now = time.perf_counter()
        self.log.info("%s in %.1f s", self._line(now), now - self.start)
