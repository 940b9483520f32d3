"""Progress lines: throttled while the work runs, and always a last line with the total and the rate."""

from __future__ import annotations

import logging

from hydratune.progress import Progress


def test_progress_lines_are_throttled_and_end_with_the_total(caplog, monkeypatch):
    clock = iter([0.0, 1.0, 6.0, 7.0, 20.0])
    monkeypatch.setattr("hydratune.progress.time.perf_counter", lambda: next(clock))
    caplog.set_level(logging.INFO)
    progress = Progress(logging.getLogger("test"), "gsm8k on tuned", "problems", total=100)  # t=0
    progress.update(10)  # t=1: too soon for a line
    progress.update(60)  # t=6: a line
    progress.update(80)  # t=7: too soon
    progress.finish()  # t=20: the last line
    assert [r.getMessage() for r in caplog.records] == [
        "gsm8k on tuned: 60/100 problems (10.0 problems/s)",
        "gsm8k on tuned: 80/100 problems (4.0 problems/s) in 20.0 s",
    ]
