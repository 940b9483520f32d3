"""run_preprocess(spec): raw rows -> examples -> token ids + labels -> packed rows -> cached shards.

The cache directory is keyed by a hash of everything that shapes its bytes: each
source's content fingerprint, the tokenizer's definition and chat template, every
preprocessing setting, the format converters' source and FORMAT_VERSION. It is
built once (concurrent builders wait on a lock and then read), atomically with its
manifest written last, and verified against the manifest's shard hashes on every
read: a partial or corrupted cache is rebuilt, never read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import logging
import random
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from hydratune.atomic_dir import build_once, read_manifest
from hydratune.cache_dirs import cache_root
from hydratune.config.spec import DatasetSpec, RunSpec, SourceSpec
from hydratune.data.errors import DataError, RowError
from hydratune.data.formats import Example, FormatOptions, format_source_text, resolve_format
from hydratune.data.packing import best_fit_decreasing, packing_efficiency
from hydratune.data.preference_formats import ROW_KINDS
from hydratune.data.report import build_report, write_report
from hydratune.data.sources import open_split
from hydratune.data.tokenize_examples import MaskPolicy, TokenSequence, fit_length, token_id_problem, tokenize_batch, tokenizer_fingerprint_parts

log = logging.getLogger(__name__)

# Bump when the bytes written for the same inputs change.
FORMAT_VERSION = 1
ROWS_PER_SHARD = 8192
TOKENIZE_BATCH = 512


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
        "settings": dataclasses.asdict(ds),
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
    from hydratune.data import packing, post_training_rows, tokenize_examples, tokenize_preferences

    modules = (tokenize_examples, packing, tokenize_preferences, post_training_rows, sys.modules[__name__])
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
    opened = {
        (split_name, i): open_split(src.path, split, config_name=src.config_name, revision=src.revision, cache_root=root)
        for split_name, entries in split_plan(ds).items()
        for i, src, split in entries
    }
    fingerprints = {f"{name}/{i}/{src.name}": src.fingerprint for (name, i), src in opened.items()}
    kind = ROW_KINDS[spec.method.name]
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


def _tokenize_source(src: SourceSpec, raw, tokenizer, ds: DatasetSpec, stats: SourceStats) -> list[TokenSequence]:
    convert = resolve_format(src.format)
    options = FormatOptions(src.fields, src.strip_calculator_annotations, src.system_prompt)
    policy = MaskPolicy(ds.train_on_inputs, ds.train_roles)
    sequences: list[TokenSequence] = []
    pending: list[tuple[str, Example]] = []

    def flush() -> None:
        for (where, _), seq in zip(pending, tokenize_batch(tokenizer, [ex for _, ex in pending], policy)):
            kept, event = fit_length(seq, ds.max_length, ds.overlong)
            if kept is None:
                stats.drop(event)
                continue
            stats.truncated += event == "truncated"
            stats.rows_kept += 1
            stats.tokens += len(kept.input_ids)
            stats.supervised += kept.supervised
            sequences.append(kept)
        pending.clear()

    vocab_size = len(tokenizer)
    for row in raw.read():
        if src.max_rows is not None and stats.rows_read >= src.max_rows:
            break
        stats.rows_read += 1
        try:
            example = checked_example(row, convert, options, vocab_size, ds.bad_rows)
        except RowError as exc:
            if ds.bad_rows == "drop":
                stats.drop(exc.reason)
                continue
            raise DataError(f"{row.location}: {exc.what}", exc.fix or "fix the row, or set dataset.bad_rows=drop to skip bad rows") from None
        stats.empty_turns_masked += len(example.empty_turns)
        pending.append((row.location, example))
        if len(pending) >= TOKENIZE_BATCH:
            flush()
    flush()
    if stats.rows_read == 0:
        raise DataError(f"{raw.name}: no rows", "check the file and the split")
    return sequences


def checked_example(row, convert, options: FormatOptions, vocab_size: int, bad_rows: str) -> Example:
    """One row as an Example, or the RowError that says what is wrong with it."""
    if row.problem is not None:  # unreadable at the source (a line that is not JSON)
        raise row.problem
    example = convert(row.data, options)
    if not isinstance(example, Example):  # a post-training row: checked by its own format
        return example
    problem = token_id_problem(example, vocab_size)
    if problem:
        raise RowError("token id out of range", problem, "tokenize with this model's tokenizer")
    if example.empty_turns and bad_rows == "error":
        raise RowError("empty assistant turn", f"turn {example.empty_turns[0]} is an empty assistant reply",
                       "fill or remove the turn, or set dataset.bad_rows=drop to mask empty turns (the other turns still train)")
    return example


def _mix(per_source: list[list[TokenSequence]], weights: list[float], seed: int) -> tuple[list[list[TokenSequence]], list[int]]:
    """Subsample so each source's share of training tokens equals its weight share.

    The most limiting source is kept whole; the others lose whole sequences at random
    (seeded). No sequence is repeated. Returns the kept sequences and how many each lost.
    """
    if len(per_source) == 1:
        return per_source, [0]
    tokens = [sum(len(s.input_ids) for s in seqs) for seqs in per_source]
    shares = [w / sum(weights) for w in weights]
    total = min(t / sh for t, sh in zip(tokens, shares))
    rng = random.Random(seed)
    kept, lost = [], []
    for seqs, share in zip(per_source, shares):
        budget = share * total
        order = list(range(len(seqs)))
        rng.shuffle(order)
        chosen, used = [], 0
        for i in order:
            if used + len(seqs[i].input_ids) > budget + 1e-9 and used > 0:
                continue
            chosen.append(seqs[i])
            used += len(seqs[i].input_ids)
        kept.append(chosen)
        lost.append(len(seqs) - len(chosen))
    return kept, lost


def hold_out(sequences: list, fraction: float, seed: int) -> tuple[list, list]:
    order = list(range(len(sequences)))
    random.Random(seed).shuffle(order)
    n_eval = round(fraction * len(sequences))
    held = set(order[:n_eval])
    return [s for i, s in enumerate(sequences) if i not in held], [sequences[i] for i in sorted(held)]


def _pack(sequences: list[TokenSequence], ds: DatasetSpec) -> tuple[list[dict[str, list[int]]], float]:
    lengths = [len(s.input_ids) for s in sequences]
    bins = best_fit_decreasing(lengths, ds.max_length) if ds.packing else [[i] for i in range(len(sequences))]
    random.Random(ds.split_seed).shuffle(bins)  # packing sorts by length; stored rows should not be
    rows = []
    for members in bins:
        ids, labels, seq_lens = [], [], []
        for i in members:
            ids += sequences[i].input_ids
            labels += sequences[i].labels
            seq_lens.append(lengths[i])
        rows.append({"input_ids": ids, "labels": labels, "seq_lens": seq_lens})
    return rows, packing_efficiency(lengths, bins, ds.max_length)


def _packed_schema():
    import pyarrow as pa

    return pa.schema([(name, pa.list_(pa.int32())) for name in ("input_ids", "labels", "seq_lens")])


def write_shards(rows: list[dict[str, Any]], split: str, out: Path, schema=None) -> dict[str, dict]:
    import pyarrow as pa

    schema = schema or _packed_schema()
    n_shards = max(1, -(-len(rows) // ROWS_PER_SHARD))
    shards = {}
    for k in range(n_shards):
        chunk = rows[k * ROWS_PER_SHARD:(k + 1) * ROWS_PER_SHARD]
        name = f"{split}-{k:05d}-of-{n_shards:05d}.arrow"
        table = pa.Table.from_pylist(chunk, schema=schema)
        with pa.OSFile(str(out / name), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            writer.write_table(table)
        shards[name] = {"rows": len(chunk), "bytes": (out / name).stat().st_size, "sha256": _sha256(out / name)}
    return shards


def _build(ds: DatasetSpec, tokenizer, opened: dict, out: Path, key: str) -> dict[str, Any]:
    start = time.perf_counter()
    plan = split_plan(ds)
    stats: dict[str, list[SourceStats]] = {}
    sequences: dict[str, list[TokenSequence]] = {}
    train_per_source = []
    for split_name, entries in plan.items():
        stats[split_name] = []
        for i, src, split in entries:
            raw = opened[(split_name, i)]
            st = SourceStats(f"{src.path}[{split}]")
            seqs = _tokenize_source(src, raw, tokenizer, ds, st)
            stats[split_name].append(st)
            if split_name == "train":
                train_per_source.append(seqs)
            else:
                sequences.setdefault("eval", []).extend(seqs)
    mixed, lost = _mix(train_per_source, [s.weight for s in _sources(ds)], ds.split_seed)
    for st, n in zip(stats["train"], lost):
        if n:
            st.dropped["mixture subsampling"] = n
    train = [s for seqs in mixed for s in seqs]
    if not ds.eval_split and ds.eval_fraction > 0:
        train, sequences["eval"] = hold_out(train, ds.eval_fraction, ds.split_seed)
    sequences["train"] = train
    if not train:
        raise DataError("no training rows are left after the sequence policy", "check dataset.max_length and dataset.overlong")

    shards, packing = {}, {}
    for split_name in ("train", "eval"):
        seqs = sequences.get(split_name) or []
        if not seqs:
            continue
        rows, efficiency = _pack(seqs, ds)
        shards[split_name] = write_shards(rows, split_name, out)
        packing[split_name] = {"rows": len(rows), "efficiency": efficiency, "sequences": len(seqs)}
    mixed_tokens = [sum(len(s.input_ids) for s in seqs) for seqs in mixed]
    report = build_report(
        ds=ds, tokenizer=tokenizer, stats=stats, sequences=sequences, packing=packing,
        realized_shares=[t / max(sum(mixed_tokens), 1) for t in mixed_tokens], seconds=time.perf_counter() - start,
    )
    write_report(report, out)
    return {"key": key, "format_version": FORMAT_VERSION, "shards": shards, "packing": packing}
