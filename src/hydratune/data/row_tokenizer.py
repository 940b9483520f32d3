"""Raw rows -> checked examples -> token sequences, in worker processes.

Rows are read in the parent and sent to `dataset.num_proc` workers in fixed batches; the
results come back in row order, so the shards are byte-identical whatever the number of
workers. A worker never decides what a bad row means: it reports it, and the parent
drops and counts it or stops with its file:line, exactly as with one process.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections import deque
from dataclasses import dataclass
from typing import Iterator, Sequence, Union

import numpy as np

from hydratune.data.errors import DataError, RowError
from hydratune.data.format_registry import resolve_format
from hydratune.data.formats import Example, FormatOptions
from hydratune.data.sources import RawRow
from hydratune.data.tokenize_examples import (
    MaskPolicy,
    dropped_by_template,
    fit_length,
    token_id_problem,
    tokenize_batch,
)

BATCH_ROWS = 512
IN_FLIGHT_PER_WORKER = 2  # batches queued per worker: enough to keep it busy, bounded memory


@dataclass(frozen=True)
class TokenizeJob:
    """What a worker needs to turn one source's rows into sequences (picklable)."""

    format: str
    options: FormatOptions
    policy: MaskPolicy
    max_length: int
    overlong: str
    bad_rows: str
    vocab_size: int


@dataclass(frozen=True)
class Kept:
    input_ids: np.ndarray
    labels: np.ndarray
    truncated: bool
    empty_turns: int


@dataclass(frozen=True)
class Dropped:
    reason: str  # by the length policy: too long, or nothing left to train
    empty_turns: int


@dataclass(frozen=True)
class BadRow:
    location: str
    reason: str
    what: str
    fix: str


RowResult = Union[Kept, Dropped, BadRow]


def checked_example(row: RawRow, convert, options: FormatOptions, vocab_size: int, bad_rows: str):
    """One row as an Example (or a post-training row), or the RowError that says what is wrong with it."""
    if row.problem is not None:  # unreadable at the source (a line that is not JSON)
        raise row.problem
    example = convert(row.data, options)
    if not isinstance(example, Example):  # a post-training row: checked by its own format
        return example
    problem = token_id_problem(example, vocab_size)
    if problem:
        raise RowError("token id out of range", problem, "tokenize with this model's tokenizer")
    if example.empty_turns and bad_rows == "error":
        raise RowError(
            "empty assistant turn",
            f"turn {example.empty_turns[0]} is an empty assistant reply",
            "fill or remove the turn, or set dataset.bad_rows=drop to mask empty turns (the other turns still train)",
        )
    return example


def tokenize_rows(job: TokenizeJob, tokenizer, rows: Sequence[RawRow]) -> list[RowResult]:
    """Each row's outcome, in order."""
    convert = resolve_format(job.format)
    results: list[RowResult | None] = [None] * len(rows)
    examples, slots = [], []
    for i, row in enumerate(rows):
        try:
            example = checked_example(row, convert, job.options, job.vocab_size, job.bad_rows)
            missing = dropped_by_template(tokenizer, example) if isinstance(example, Example) else None
            if missing:
                raise RowError(
                    "template drops tool calls or reasoning",
                    f"the chat template does not render its {missing}",
                    "use a model.chat_template that renders tool_calls and reasoning_content (a Jinja string or .jinja "
                    "file)",
                )
            examples.append(example)
            slots.append(i)
        except RowError as exc:
            results[i] = BadRow(row.location, exc.reason, exc.what, exc.fix)
    for i, example, seq in zip(slots, examples, tokenize_batch(tokenizer, examples, job.policy)):
        kept, event = fit_length(seq, job.max_length, job.overlong)
        empty = len(example.empty_turns)
        results[i] = (
            Dropped(event, empty) if kept is None else Kept(kept.input_ids, kept.labels, event == "truncated", empty)
        )
    return results  # type: ignore[return-value]


# ------------------------------------------------------------------ workers
_worker_tokenizer = None


def _start_worker(tokenizer) -> None:
    global _worker_tokenizer
    # One thread per worker: the workers are the parallelism (and a forked Rust thread pool
    # would warn and turn itself off anyway).
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _worker_tokenizer = tokenizer


def _run_in_worker(job: TokenizeJob, rows: list[RawRow]) -> list[RowResult] | DataError:
    try:
        return tokenize_rows(job, _worker_tokenizer, rows)
    except DataError as exc:  # the source cannot be tokenized at all (a template that cannot mask)
        return DataError(exc.what, exc.fix)


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def batches(rows: Iterator[RawRow], size: int = BATCH_ROWS) -> Iterator[list[RawRow]]:
    batch: list[RawRow] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def tokenized_batches(
    job: TokenizeJob, tokenizer, row_batches: Iterator[list[RawRow]], num_proc: int
) -> Iterator[list[RowResult]]:
    """The results of each batch, in order. A source of one batch is tokenized here; larger
    ones in `num_proc` forked workers, with at most a few batches in flight per worker."""
    first = next(row_batches, None)
    if first is None:
        return
    second = next(row_batches, None)
    every = itertools.chain((first,), () if second is None else (second,), row_batches)
    if second is None or num_proc <= 1:
        for batch in every:
            yield tokenize_rows(job, tokenizer, batch)
        return
    context = multiprocessing.get_context("fork")
    with context.Pool(num_proc, initializer=_start_worker, initargs=(tokenizer,)) as pool:
        pending: deque = deque()

        def submit() -> bool:
            batch = next(every, None)
            if batch is not None:
                pending.append(pool.apply_async(_run_in_worker, (job, batch)))
            return batch is not None

        while len(pending) < num_proc * IN_FLIGHT_PER_WORKER and submit():
            pass
        while pending:
            result = pending.popleft().get()
            if isinstance(result, DataError):
                raise result
            submit()
            yield result
