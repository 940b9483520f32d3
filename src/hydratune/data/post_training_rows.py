"""The data stage for dpo, kto and grpo: rows -> typed examples -> token ids -> cached shards.

Same sources, row errors, hold-out, content-keyed cache and report as SFT; what differs
is the row: a preference pair, an unpaired row or a prompt, never packed. Rows are
stored shuffled once (dataset.split_seed), so a sequential reader (KTO) sees them mixed.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any, Callable

from hydratune.config.spec import DatasetSpec
from hydratune.data.errors import DataError, RowError
from hydratune.data.format_registry import resolve_format
from hydratune.data.formats import Example, FormatOptions
from hydratune.data.preference_formats import (
    PreferencePair,
    PromptExample,
    UnpairedExample,
    prompt_from_conversation,
    unpaired_from_pair,
)
from hydratune.data.report import post_training_report, write_report
from hydratune.data.row_reading import (
    SourceStats,
    bad_row_error,
    hold_out,
    read_rows,
    split_plan,
)
from hydratune.data.row_tokenizer import BadRow, checked_example
from hydratune.data.shard_files import write_shards
from hydratune.data.tokenize_preferences import (
    tokenize_pair,
    tokenize_prompt,
    tokenize_unpaired,
)


def _schema(kind: str):
    import pyarrow as pa

    ids = pa.list_(pa.int32())
    return {
        "pair": pa.schema([("prompt_ids", ids), ("chosen_ids", ids), ("rejected_ids", ids)]),
        "unpaired": pa.schema([("prompt_ids", ids), ("completion_ids", ids), ("label", pa.bool_())]),
        "prompt": pa.schema(
            [
                ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
                ("answer", pa.string()),
                ("prompt_tokens", pa.int32()),
                ("source_row", pa.string()),  # file:line, so a check on the stored rows can name the row
            ]
        ),
    }[kind]


def _as_kind(example: Any, kind: str) -> list[Any]:
    """A converted row as the examples of `kind` it yields (a pair gives KTO two rows)."""
    if kind == "pair" and isinstance(example, PreferencePair):
        return [example]
    if kind == "unpaired" and isinstance(example, UnpairedExample):
        return [example]
    if kind == "unpaired" and isinstance(example, PreferencePair):
        return unpaired_from_pair(example)
    if kind == "prompt" and isinstance(example, PromptExample):
        return [example]
    if kind == "prompt" and isinstance(example, Example):
        return [prompt_from_conversation(example)]
    wanted = {
        "pair": "preference pairs (format=preference)",
        "unpaired": "unpaired rows (format=unpaired or preference)",
        "prompt": "prompts (format=prompt, or a conversational format)",
    }[kind]
    raise RowError(
        "wrong row kind",
        f"the format gives {type(example).__name__}, and this method trains on {wanted}",
        "set dataset.format to one for this method (see docs/configuration.md, dataset.format)",
    )


TOKENIZE: dict[str, Callable[..., tuple[dict | None, str | None]]] = {
    "pair": tokenize_pair,
    "unpaired": tokenize_unpaired,
    "prompt": tokenize_prompt,
}


def _source_rows(src, raw, tokenizer, ds: DatasetSpec, stats: SourceStats, kind: str) -> list[dict[str, Any]]:
    convert = resolve_format(src.format)
    options = FormatOptions(src.fields, src.strip_calculator_annotations, src.system_prompt)
    rows = []
    for row in read_rows(raw, src, stats):
        try:
            examples = _as_kind(checked_example(row, convert, options, len(tokenizer), ds.bad_rows), kind)
        except RowError as exc:
            if ds.bad_rows == "drop":
                stats.drop(exc.reason)
                continue
            raise bad_row_error(BadRow(row.location, exc.reason, exc.what, exc.fix)) from None
        for example in examples:
            out, event = TOKENIZE[kind](tokenizer, example, ds.max_length, ds.overlong)
            if out is None:
                stats.drop(event)
                continue
            if kind == "prompt":
                out["source_row"] = row.location
            stats.truncated += event == "truncated"
            stats.rows_kept += 1
            stats.tokens += sum(len(v) for k, v in out.items() if k.endswith("_ids")) or out.get("prompt_tokens", 0)
            rows.append(out)
    if stats.rows_read == 0:
        raise DataError(f"{raw.name}: no rows", "check the file and the split")
    return rows


def build_post_training(ds: DatasetSpec, tokenizer, opened: dict, out: Path, key: str, *, kind: str) -> dict[str, Any]:
    start = time.perf_counter()
    stats: dict[str, list[SourceStats]] = {}
    rows: dict[str, list[dict[str, Any]]] = {"train": [], "eval": []}
    for split_name, entries in split_plan(ds).items():
        stats[split_name] = []
        for i, src, split in entries:
            st = SourceStats(f"{src.path}[{split}]")
            rows[split_name] += _source_rows(src, opened[(split_name, i)], tokenizer, ds, st, kind)
            stats[split_name].append(st)
    if not ds.eval_split and ds.eval_fraction > 0:
        rows["train"], rows["eval"] = hold_out(rows["train"], ds.eval_fraction, ds.split_seed)
    if not rows["train"]:
        raise DataError(
            "no training rows are left after the length policy", "check dataset.max_length and dataset.overlong"
        )
    random.Random(ds.split_seed).shuffle(rows["train"])
    shards = {split: write_shards(r, split, out, _schema(kind)) for split, r in rows.items() if r}
    report = post_training_report(
        kind=kind, ds=ds, tokenizer=tokenizer, stats=stats, rows=rows, seconds=time.perf_counter() - start
    )
    write_report(report, out)
    return {"key": key, "row_kind": kind, "shards": shards, "packing": {}}
