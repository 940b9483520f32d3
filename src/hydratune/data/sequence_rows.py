"""The SFT data build: rows -> token ids and labels (in worker processes) -> spilled to disk ->
mixture and held-out rows chosen on lengths -> packed -> shards written one at a time.

Memory stays flat as the data grows: rows are tokenized in batches by `dataset.num_proc`
workers and spilled to flat files; the mixture, the held-out rows and the packing are
decided on lengths alone; the packed rows are written one shard at a time, reading their
sequences back from the spill.
"""

from __future__ import annotations

import logging
import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from hydratune.config.spec import DatasetSpec, SourceSpec
from hydratune.data.chat_spans import MaskPolicy
from hydratune.data.errors import DataError
from hydratune.data.formats import FormatOptions
from hydratune.data.packing import pack_lengths, packing_efficiency
from hydratune.data.report import EXAMPLES_SHOWN, build_report, write_report
from hydratune.data.row_reading import (
    SourceStats,
    bad_row_error,
    dataset_sources,
    hold_out,
    read_rows,
    split_plan,
)
from hydratune.data.row_tokenizer import (
    BadRow,
    Dropped,
    TokenizeJob,
    batches,
    default_workers,
    tokenized_batches,
)
from hydratune.data.sequence_store import SequenceStore, SequenceWriter
from hydratune.data.shard_files import ROWS_PER_SHARD, shard_name, write_table
from hydratune.progress import Progress

log = logging.getLogger(__name__)


def _tokenize_source(
    src: SourceSpec, raw, tokenizer, ds: DatasetSpec, stats: SourceStats, writer: SequenceWriter
) -> None:
    job = TokenizeJob(
        src.format,
        FormatOptions(src.fields, src.strip_calculator_annotations, src.system_prompt),
        MaskPolicy(ds.train_on_inputs, ds.train_roles),
        ds.max_length,
        ds.overlong,
        ds.bad_rows,
        len(tokenizer),
    )
    progress = Progress(log, f"data: {raw.name}", "rows")
    for results in tokenized_batches(
        job, tokenizer, batches(read_rows(raw, src, stats)), ds.num_proc or default_workers()
    ):
        progress.update(stats.rows_read)
        kept = []
        for result in results:
            if isinstance(result, BadRow):
                if ds.bad_rows != "drop":
                    raise bad_row_error(result)
                stats.drop(result.reason)
                continue
            stats.empty_turns_masked += result.empty_turns
            if isinstance(result, Dropped):
                stats.drop(result.reason)
                continue
            stats.truncated += result.truncated
            stats.rows_kept += 1
            kept.append((result.input_ids, result.labels))
        writer.add(kept)
    progress.finish()
    if stats.rows_read == 0:
        raise DataError(f"{raw.name}: no rows", "check the file and the split")


def _mix(lengths: list[np.ndarray], weights: list[float], seed: int) -> list[np.ndarray]:
    """Which sequences of each source to keep so that each source's share of training tokens
    equals its weight share.

    The most limiting source is kept whole; the others lose whole sequences at random
    (seeded). No sequence is repeated. Returns the kept indices of each source, ascending.
    """
    if len(lengths) == 1:
        return [np.arange(len(lengths[0]))]
    tokens = [int(n.sum()) for n in lengths]
    shares = [w / sum(weights) for w in weights]
    total = min(t / sh for t, sh in zip(tokens, shares))
    rng = random.Random(seed)
    kept = []
    for sizes, share in zip(lengths, shares):
        budget = share * total
        order = list(range(len(sizes)))
        rng.shuffle(order)
        chosen, used = [], 0
        for i in order:
            size = int(sizes[i])
            if used + size > budget + 1e-9 and used > 0:
                continue
            chosen.append(i)
            used += size
        kept.append(np.array(sorted(chosen), dtype=np.int64))
    return kept


def packed_schema():
    import pyarrow as pa

    return pa.schema([(name, pa.list_(pa.int32())) for name in ("input_ids", "labels", "seq_lens")])


def write_packed_shards(
    bins: list[list[int]], refs: list[tuple[int, int]], stores: list[SequenceStore], split: str, out: Path
) -> dict[str, dict]:
    """Packed rows as shards: bin members index `refs`, which name (store, sequence) pairs
    read back from disk, each straight into its place in the shard's columns.

    Two shards are built at a time, each on a thread of its own: the reads, Arrow's write and
    the hash release the GIL, so the two overlap on two cores, and no more than two shards
    are in memory at once."""
    from concurrent.futures import ThreadPoolExecutor

    n_shards = max(1, -(-len(bins) // ROWS_PER_SHARD))

    def write_shard(k: int) -> tuple[str, dict]:
        name = shard_name(split, k, n_shards)
        table = _shard_table(bins[k * ROWS_PER_SHARD : (k + 1) * ROWS_PER_SHARD], refs, stores)
        return name, write_table(table, name, out)

    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="shard-writer")
    try:
        return dict(pool.map(write_shard, range(n_shards)))
    finally:
        pool.shutdown(cancel_futures=True)  # a failed shard stops the ones not yet started


def _shard_table(shard_bins: list[list[int]], refs: list[tuple[int, int]], stores: list[SequenceStore]):
    """One shard's packed rows as an Arrow table, its sequences read from the spill."""
    import pyarrow as pa

    members = [refs[m] for row in shard_bins for m in row]
    seq_lens = np.array([stores[s].lengths[i] for s, i in members], dtype=np.int32)
    ends = np.cumsum(seq_lens)
    ids, labels = np.empty((2, int(ends[-1]) if len(ends) else 0), dtype=np.int32)
    for (s, i), end, size in zip(members, ends.tolist(), seq_lens.tolist()):
        stores[s].read_into(i, ids[end - size : end], labels[end - size : end])
    seqs_per_row = _offsets([len(row) for row in shard_bins])
    row_offsets = pa.array(np.concatenate([[0], ends])[seqs_per_row].astype(np.int32))
    return pa.Table.from_arrays(
        [
            pa.ListArray.from_arrays(row_offsets, pa.array(ids)),
            pa.ListArray.from_arrays(row_offsets, pa.array(labels)),
            pa.ListArray.from_arrays(pa.array(seqs_per_row.astype(np.int32)), pa.array(seq_lens)),
        ],
        schema=packed_schema(),
    )


def _offsets(counts: list[int]) -> np.ndarray:
    """[0, c0, c0 + c1, ...]: where each of the counted runs starts, and the end."""
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


def build_sequences(ds: DatasetSpec, tokenizer, opened: dict, out: Path, key: str) -> dict[str, Any]:
    """Tokenize every source to disk, choose the mixture and held-out rows on lengths, pack
    on lengths, and write the packed rows reading the sequences back by index."""
    start = time.perf_counter()
    spill = out / "_sequences"  # the tokenized sequences, removed once the shards are written
    spill.mkdir()
    stats, stores = _tokenize_sources(ds, tokenizer, opened, spill)
    kept = _mix([s.lengths for s in stores["train"]], [s.weight for s in dataset_sources(ds)], ds.split_seed)
    for st, store, chosen in zip(stats["train"], stores["train"], kept):
        if len(chosen) < len(store):
            st.dropped["mixture subsampling"] = len(store) - len(chosen)
    refs = {"train": [(s, int(i)) for s, chosen in enumerate(kept) for i in chosen]}
    refs["eval"] = [(s, i) for s, store in enumerate(stores["eval"]) for i in range(len(store))]
    split_stores = {"train": stores["train"], "eval": stores["eval"]}
    if not ds.eval_split and ds.eval_fraction > 0:
        refs["train"], refs["eval"] = hold_out(refs["train"], ds.eval_fraction, ds.split_seed)
        split_stores["eval"] = stores["train"]
    if not refs["train"]:
        raise DataError(
            "no training rows are left after the sequence policy", "check dataset.max_length and dataset.overlong"
        )
    shards, packing, lengths = {}, {}, {}
    for split_name in ("train", "eval"):
        if refs[split_name]:
            shards[split_name], packing[split_name], lengths[split_name] = _pack_split(
                ds, refs[split_name], split_stores[split_name], split_name, out
            )
    mixed_tokens = [int(store.lengths[chosen].sum()) for store, chosen in zip(stores["train"], kept)]
    train_store = split_stores["train"]
    report = build_report(
        ds=ds,
        tokenizer=tokenizer,
        stats=stats,
        lengths=lengths,
        supervised=sum(int(train_store[s].supervised[i]) for s, i in refs["train"]),
        examples=[train_store[s].sequence(i) for s, i in refs["train"][:EXAMPLES_SHOWN]],
        packing=packing,
        realized_shares=[t / max(sum(mixed_tokens), 1) for t in mixed_tokens],
        seconds=time.perf_counter() - start,
    )
    write_report(report, out)
    for store in (*stores["train"], *stores["eval"]):
        store.close()
    shutil.rmtree(spill)
    return {"key": key, "shards": shards, "packing": packing}


def _tokenize_sources(ds: DatasetSpec, tokenizer, opened: dict, spill: Path):
    """Every (split, source) tokenized into its own spill store, with its counts."""
    stats: dict[str, list[SourceStats]] = {}
    stores: dict[str, list[SequenceStore]] = {}
    for split_name, entries in split_plan(ds).items():
        stats[split_name], stores[split_name] = [], []
        for i, src, split in entries:
            st = SourceStats(f"{src.path}[{split}]")
            writer = SequenceWriter(spill / f"{split_name}-{i}")
            _tokenize_source(src, opened[(split_name, i)], tokenizer, ds, st, writer)
            store = writer.close()
            st.tokens, st.supervised = int(store.lengths.sum()), int(store.supervised.sum())
            stores[split_name].append(store)
            stats[split_name].append(st)
    return stats, stores


def _pack_split(ds: DatasetSpec, refs: list, stores: list, split_name: str, out: Path):
    """(shards, packing figures, lengths) of one split: its sequences packed on their lengths and written."""
    lengths = np.array([stores[s].lengths[i] for s, i in refs], dtype=np.int64)
    bins = pack_lengths(lengths.tolist(), ds.max_length) if ds.packing else [[i] for i in range(len(refs))]
    random.Random(ds.split_seed).shuffle(bins)  # packing groups by length; stored rows should not be
    shards = write_packed_shards(bins, refs, stores, split_name, out)
    packing = {
        "rows": len(bins),
        "efficiency": packing_efficiency(lengths, bins, ds.max_length),
        "sequences": len(refs),
    }
    return shards, packing, lengths
