"""What every data build shares: the sources of a dataset, which (source, split) pairs feed the
train and held-out rows, reading a source's rows with their counts, and the held-out draw."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Iterator

from hydratune.config.spec import DatasetSpec, SourceSpec
from hydratune.data.errors import DataError
from hydratune.data.row_tokenizer import BadRow


def dataset_sources(ds: DatasetSpec) -> list[SourceSpec]:
    primary = SourceSpec(**{f.name: getattr(ds, f.name) for f in dataclasses.fields(SourceSpec)})
    return [primary, *ds.mix]


def split_plan(ds: DatasetSpec) -> dict[str, list[tuple[int, SourceSpec, str]]]:
    """Which (source index, source, split) pairs feed the train and eval rows."""
    plan = {"train": [(i, s, s.split) for i, s in enumerate(dataset_sources(ds))], "eval": []}
    if ds.eval_split:
        plan["eval"] = [(0, dataset_sources(ds)[0], ds.eval_split)]
    return plan


@dataclass
class SourceStats:
    name: str
    rows_read: int = 0
    rows_kept: int = 0
    truncated: int = 0
    dropped: dict[str, int] = dataclasses.field(default_factory=dict)
    tokens: int = 0
    supervised: int = 0
    empty_turns_masked: int = 0  # empty assistant replies inside kept conversations (never trained)

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1


def read_rows(raw, src: SourceSpec, stats: SourceStats) -> Iterator:
    """The source's rows up to `max_rows`, counted as read."""
    for row in raw.read():
        if src.max_rows is not None and stats.rows_read >= src.max_rows:
            return
        stats.rows_read += 1
        yield row


def bad_row_error(row: BadRow) -> DataError:
    return DataError(
        f"{row.location}: {row.what}", row.fix or "fix the row, or set dataset.bad_rows=drop to skip bad rows"
    )


def hold_out(items: list, fraction: float, seed: int) -> tuple[list, list]:
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    n_eval = round(fraction * len(items))
    held = set(order[:n_eval])
    return [s for i, s in enumerate(items) if i not in held], [items[i] for i in sorted(held)]
