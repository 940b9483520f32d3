"""run_preprocess(spec): raw rows -> examples -> token ids + labels -> packed rows -> cached shards.

The cache directory is keyed by a hash of everything that shapes its bytes: each
source's content fingerprint, the tokenizer's definition and chat template, every
preprocessing setting, the format converters' source and FORMAT_VERSION. It is
built once (concurrent builders wait on a lock and then read), atomically with its
manifest written last, and verified against the manifest's shard hashes on every
read: a partial or corrupted cache is rebuilt, never read.

Memory stays flat as the data grows: rows are tokenized in batches by `dataset.num_proc`
workers and spilled to an Arrow file; the mixture, the held-out rows and the packing are
decided on lengths alone; the packed rows are written one shard at a time, reading their
sequences back from the memory-mapped spill.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import logging
import random
import shutil
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from hydratune.atomic_dir import build_once, read_manifest
from hydratune.cache_dirs import cache_root
from hydratune.progress import Progress
from hydratune.config.spec import DatasetSpec, RunSpec, SourceSpec
from hydratune.data.errors import DataError
from hydratune.data.formats import FormatOptions, format_source_text
from hydratune.data.packing import pack_lengths, packing_efficiency
from hydratune.data.preference_formats import ROW_KINDS
from hydratune.data.report import EXAMPLES_SHOWN, build_report, write_report
from hydratune.data.row_tokenizer import BadRow, Dropped, TokenizeJob, batches, default_workers, tokenized_batches
from hydratune.data.sequence_store import SequenceStore, SequenceWriter, list_column
from hydratune.data.sources import open_split
from hydratune.data.tokenize_examples import MaskPolicy, tokenizer_fingerprint_parts

log = logging.getLogger(__name__)

# Bump when the bytes written for the same inputs change.
FORMAT_VERSION = 2
ROWS_PER_SHARD = 8192


@dataclass(frozen=True)
class PreparedData:
    directory: Path
    key: str
    manifest: dict[str, Any]
    cache_hit: bool
    seconds: float

    @property
    def report(self) -> dict[str, Any]:
        return json.loads((self.directory / "report.json").read_text())

    def load(self, split: str = "train"):
        """The packed rows of `split`, memory-mapped from the Arrow shards (None if there are none)."""
        import datasets

        files = [self.directory / name for name in self.manifest["shards"].get(split, {})]
        if not files:
            return None
        return datasets.concatenate_datasets([datasets.Dataset.from_file(str(f)) for f in files])


# ---------------------------------------------------------------------- key
def _sources(ds: DatasetSpec) -> list[SourceSpec]:
    primary = SourceSpec(**{f.name: getattr(ds, f.name) for f in dataclasses.fields(SourceSpec)})
    return [primary, *ds.mix]


def cache_key(ds: DatasetSpec, tokenizer, fingerprints: dict[str, str], row_kind: str = "sequence") -> str:
    digest = hashlib.sha256()
    parts = {
        "format_version": FORMAT_VERSION,
        "row_kind": row_kind,
        # The worker count never changes the bytes written (tested), so it is not part of the key.
        "settings": {k: v for k, v in dataclasses.asdict(ds).items() if k != "num_proc"},
        "sources": fingerprints,
        "converters": {s.format: format_source_text(s.format) for s in _sources(ds)},
        "code": data_stage_source(),
        "tokenizer": [hashlib.sha256(p.encode()).hexdigest() for p in tokenizer_fingerprint_parts(tokenizer)],
    }
    digest.update(json.dumps(parts, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def data_stage_source() -> str:
    """The code that turns rows into shards (tokenizing, masking, packing): part of the key,
    so a change to it never reuses shards the old code wrote."""
    from hydratune.data import packing, post_training_rows, row_tokenizer, sequence_store, tokenize_examples, tokenize_preferences

    modules = (tokenize_examples, row_tokenizer, sequence_store, packing, tokenize_preferences, post_training_rows, sys.modules[__name__])
    return "".join(inspect.getsource(module) for module in modules)


def split_plan(ds: DatasetSpec) -> dict[str, list[tuple[int, SourceSpec, str]]]:
    """Which (source index, source, split) pairs feed the train and eval rows."""
    plan = {"train": [(i, s, s.split) for i, s in enumerate(_sources(ds))], "eval": []}
    if ds.eval_split:
        plan["eval"] = [(0, _sources(ds)[0], ds.eval_split)]
    return plan


# -------------------------------------------------------------------- stage
def run_preprocess(spec: RunSpec, *, tokenizer=None) -> PreparedData:
    """Build or find the tokenized shards of the spec's dataset."""
    from hydratune.data.post_training_rows import build_post_training
    from hydratune.models.model_loading import load_tokenizer

    start = time.perf_counter()
    root = cache_root(spec.run.cache_dir)
    tokenizer = tokenizer or load_tokenizer(spec.model, root)
    ds = spec.dataset
    kind = ROW_KINDS[spec.method.name]
    if any(src.format not in NO_TEMPLATE_FORMATS for src in _sources(ds)):
        check_template(spec, tokenizer)  # before any row is read, for every method: each renders conversations
    opened = {
        (split_name, i): open_split(src.path, split, config_name=src.config_name, revision=src.revision, cache_root=root, streaming=src.streaming)
        for split_name, entries in split_plan(ds).items()
        for i, src, split in entries
    }
    fingerprints = {f"{name}/{i}/{src.name}": src.fingerprint for (name, i), src in opened.items()}
    key = cache_key(ds, tokenizer, fingerprints, kind)
    target = root / "data" / key[:24]
    build = _build if kind == "sequence" else partial(build_post_training, kind=kind)
    directory, built = build_once(
        target,
        lambda tmp: build(ds, tokenizer, opened, tmp, key),
        is_valid=_shards_intact,
    )
    manifest = read_manifest(directory)
    prepared = PreparedData(directory, key, manifest, cache_hit=not built, seconds=time.perf_counter() - start)
    log.info("data: %s %s in %.2fs", "cache hit" if prepared.cache_hit else "built", directory, prepared.seconds)
    return prepared


# Rows of these formats are text or token ids: no chat template renders them.
NO_TEMPLATE_FORMATS = ("completion", "pretokenized")


def check_template(spec: RunSpec, tokenizer) -> None:
    """The tokenizer has a chat template, and it renders each turn after the ones before it
    (masking finds a turn's tokens that way): one clear error before tokenizing, not per row."""
    from hydratune.config.problems import ConfigError, Problem
    from hydratune.models.chat_templates import masking_break, shown_choice

    key = shown_choice(spec.model.chat_template)
    if not tokenizer.chat_template:
        raise ConfigError([Problem(key, f"the tokenizer of {spec.model.name} has no chat template to render conversations",
                                   "set model.chat_template=chatml (or llama3, a path to a .jinja file, or the Jinja text)")])
    where = masking_break(tokenizer)
    if where:
        raise ConfigError([Problem(key, f"the chat template cannot be masked: {where}",
                                   "use a template that renders each turn after the ones before it, e.g. model.chat_template=chatml")])


def _shards_intact(directory: Path, manifest: dict) -> bool:
    """Every shard is present with the size and hash the manifest recorded. A manifest that
    lacks a field is damaged too: the cache is rebuilt, never read half-described."""
    try:
        for shards in manifest["shards"].values():
            for name, meta in shards.items():
                path = directory / name
                if not path.is_file() or path.stat().st_size != meta["bytes"] or _sha256(path) != meta["sha256"]:
                    log.warning("data cache %s is damaged (%s); rebuilding", directory, name)
                    return False
    except (KeyError, TypeError, AttributeError) as missing:
        log.warning("data cache %s has a damaged manifest (%r); rebuilding", directory, missing)
        return False
    return (directory / "report.json").is_file()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


# -------------------------------------------------------------------- build
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
    return DataError(f"{row.location}: {row.what}", row.fix or "fix the row, or set dataset.bad_rows=drop to skip bad rows")


def _tokenize_source(src: SourceSpec, raw, tokenizer, ds: DatasetSpec, stats: SourceStats, writer: SequenceWriter) -> None:
    job = TokenizeJob(src.format, FormatOptions(src.fields, src.strip_calculator_annotations, src.system_prompt),
                      MaskPolicy(ds.train_on_inputs, ds.train_roles), ds.max_length, ds.overlong, ds.bad_rows, len(tokenizer))
    progress = Progress(log, f"data: {raw.name}", "rows")
    for results in tokenized_batches(job, tokenizer, batches(read_rows(raw, src, stats)), ds.num_proc or default_workers()):
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


def hold_out(items: list, fraction: float, seed: int) -> tuple[list, list]:
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    n_eval = round(fraction * len(items))
    held = set(order[:n_eval])
    return [s for i, s in enumerate(items) if i not in held], [items[i] for i in sorted(held)]


def _packed_schema():
    import pyarrow as pa

    return pa.schema([(name, pa.list_(pa.int32())) for name in ("input_ids", "labels", "seq_lens")])


def _write_table(table, name: str, out: Path) -> dict[str, Any]:
    import pyarrow as pa

    with pa.OSFile(str(out / name), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return {"rows": table.num_rows, "bytes": (out / name).stat().st_size, "sha256": _sha256(out / name)}


def _shard_name(split: str, k: int, n_shards: int) -> str:
    return f"{split}-{k:05d}-of-{n_shards:05d}.arrow"


def write_shards(rows: list[dict[str, Any]], split: str, out: Path, schema=None) -> dict[str, dict]:
    """Rows held in memory (post-training rows) as shards."""
    import pyarrow as pa

    schema = schema or _packed_schema()
    n_shards = max(1, -(-len(rows) // ROWS_PER_SHARD))
    return {
        _shard_name(split, k, n_shards): _write_table(pa.Table.from_pylist(rows[k * ROWS_PER_SHARD:(k + 1) * ROWS_PER_SHARD], schema=schema),
                                                      _shard_name(split, k, n_shards), out)
        for k in range(n_shards)
    }


def write_packed_shards(bins: list[list[int]], refs: list[tuple[int, int]], stores: list[SequenceStore], split: str, out: Path) -> dict[str, dict]:
    """Packed rows as shards, one shard in memory at a time: bin members index `refs`,
    which name (store, sequence) pairs read back from disk."""
    import pyarrow as pa

    n_shards = max(1, -(-len(bins) // ROWS_PER_SHARD))
    shards = {}
    for k in range(n_shards):
        ids, labels, seq_lens = [], [], []
        for members in bins[k * ROWS_PER_SHARD:(k + 1) * ROWS_PER_SHARD]:
            parts = [stores[s].sequence(i) for s, i in (refs[m] for m in members)]
            ids.append(np.concatenate([p[0] for p in parts]))
            labels.append(np.concatenate([p[1] for p in parts]))
            seq_lens.append(np.array([len(p[0]) for p in parts], dtype=np.int32))
        table = pa.Table.from_arrays([list_column(ids), list_column(labels), list_column(seq_lens)], schema=_packed_schema())
        name = _shard_name(split, k, n_shards)
        shards[name] = _write_table(table, name, out)
    return shards


def _build(ds: DatasetSpec, tokenizer, opened: dict, out: Path, key: str) -> dict[str, Any]:
    """Tokenize every source to disk, choose the mixture and held-out rows on lengths, pack
    on lengths, and write the packed rows reading the sequences back by index."""
    start = time.perf_counter()
    spill = out / "_sequences"  # the tokenized sequences, removed once the shards are written
    spill.mkdir()
    stats: dict[str, list[SourceStats]] = {}
    stores: dict[str, list[SequenceStore]] = {}
    for split_name, entries in split_plan(ds).items():
        stats[split_name], stores[split_name] = [], []
        for i, src, split in entries:
            st = SourceStats(f"{src.path}[{split}]")
            writer = SequenceWriter(spill / f"{split_name}-{i}")
            _tokenize_source(src, opened[(split_name, i)], tokenizer, ds, st, writer)
            stores[split_name].append(writer.close())
            stats[split_name].append(st)
    for split_name in stats:
        for st, store in zip(stats[split_name], stores[split_name]):
            st.tokens, st.supervised = int(store.lengths.sum()), int(store.supervised.sum())
    kept = _mix([s.lengths for s in stores["train"]], [s.weight for s in _sources(ds)], ds.split_seed)
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
        raise DataError("no training rows are left after the sequence policy", "check dataset.max_length and dataset.overlong")

    shards, packing, lengths = {}, {}, {}
    for split_name in ("train", "eval"):
        if not refs[split_name]:
            continue
        split_refs, split_store = refs[split_name], split_stores[split_name]
        lengths[split_name] = np.array([split_store[s].lengths[i] for s, i in split_refs], dtype=np.int64)
        bins = pack_lengths(lengths[split_name].tolist(), ds.max_length) if ds.packing else [[i] for i in range(len(split_refs))]
        random.Random(ds.split_seed).shuffle(bins)  # packing groups by length; stored rows should not be
        shards[split_name] = write_packed_shards(bins, split_refs, split_store, split_name, out)
        packing[split_name] = {"rows": len(bins), "efficiency": packing_efficiency(lengths[split_name], bins, ds.max_length),
                               "sequences": len(split_refs)}
    mixed_tokens = [int(store.lengths[chosen].sum()) for store, chosen in zip(stores["train"], kept)]
    train_store = split_stores["train"]
    report = build_report(
        ds=ds, tokenizer=tokenizer, stats=stats, lengths=lengths,
        supervised=sum(int(train_store[s].supervised[i]) for s, i in refs["train"]),
        examples=[train_store[s].sequence(i) for s, i in refs["train"][:EXAMPLES_SHOWN]],
        packing=packing, realized_shares=[t / max(sum(mixed_tokens), 1) for t in mixed_tokens],
        seconds=time.perf_counter() - start,
    )
    write_report(report, out)
    for store in (*stores["train"], *stores["eval"]):
        store.close()
    shutil.rmtree(spill)
    return {"key": key, "format_version": FORMAT_VERSION, "shards": shards, "packing": packing}
