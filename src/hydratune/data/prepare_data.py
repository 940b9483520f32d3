"""run_preprocess(spec): a dataset's rows as cached, tokenized shards, built once or found.

The cache directory is keyed by a hash of everything that shapes its bytes: each
source's content fingerprint, the tokenizer's definition and chat template, every
preprocessing setting, the format converters' source, the data stage's code and
FORMAT_VERSION. It is built once (concurrent builders wait on a lock and then read),
atomically with its manifest written last, and verified against the manifest's shard
hashes on every read: a partial or corrupted cache is rebuilt, never read. The rows are
built by sequence_rows.py (SFT: tokenized, masked, packed) or post_training_rows.py
(preference pairs, unpaired rows, prompts).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import logging
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from hydratune.atomic_dir import build_once, read_manifest
from hydratune.cache_dirs import cache_root
from hydratune.config.problems import ConfigError, Problem
from hydratune.config.spec import DatasetSpec, RunSpec
from hydratune.data import (
    chat_spans,
    packing,
    post_training_rows,
    row_reading,
    row_tokenizer,
    sequence_rows,
    sequence_store,
    shard_files,
    tokenize_examples,
    tokenize_preferences,
)
from hydratune.data.format_registry import format_source_text
from hydratune.data.post_training_rows import build_post_training
from hydratune.data.preference_formats import ROW_KINDS
from hydratune.data.row_reading import dataset_sources, split_plan
from hydratune.data.sequence_rows import build_sequences
from hydratune.data.shard_files import sha256_of
from hydratune.data.sources import open_split
from hydratune.data.tokenize_examples import tokenizer_fingerprint_parts
from hydratune.models.chat_templates import masking_break, shown_choice
from hydratune.models.model_loading import load_tokenizer

log = logging.getLogger(__name__)

# Bump when the bytes written for the same inputs change.
FORMAT_VERSION = 2


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
def cache_key(ds: DatasetSpec, tokenizer, fingerprints: dict[str, str], row_kind: str = "sequence") -> str:
    digest = hashlib.sha256()
    parts = {
        "format_version": FORMAT_VERSION,
        "row_kind": row_kind,
        # The worker count never changes the bytes written (tested), so it is not part of the key.
        "settings": {k: v for k, v in dataclasses.asdict(ds).items() if k != "num_proc"},
        "sources": fingerprints,
        "converters": {s.format: format_source_text(s.format) for s in dataset_sources(ds)},
        "code": data_stage_source(),
        "tokenizer": [hashlib.sha256(p.encode()).hexdigest() for p in tokenizer_fingerprint_parts(tokenizer)],
    }
    digest.update(json.dumps(parts, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def data_stage_source() -> str:
    """The code that turns rows into shards (tokenizing, masking, packing): part of the key,
    so a change to it never reuses shards the old code wrote."""
    modules = (
        chat_spans,
        tokenize_examples,
        row_tokenizer,
        sequence_store,
        packing,
        tokenize_preferences,
        row_reading,
        shard_files,
        sequence_rows,
        post_training_rows,
        sys.modules[__name__],
    )
    return "".join(inspect.getsource(module) for module in modules)


# -------------------------------------------------------------------- stage
def run_preprocess(spec: RunSpec, *, tokenizer=None) -> PreparedData:
    """Build or find the tokenized shards of the spec's dataset."""
    start = time.perf_counter()
    root = cache_root(spec.run.cache_dir)
    tokenizer = tokenizer or load_tokenizer(spec.model, root)
    ds = spec.dataset
    kind = ROW_KINDS[spec.method.name]
    if any(src.format not in NO_TEMPLATE_FORMATS for src in dataset_sources(ds)):
        check_template(spec, tokenizer)  # before any row is read, for every method: each renders conversations
    opened = {
        (split_name, i): open_split(
            src.path,
            split,
            config_name=src.config_name,
            revision=src.revision,
            cache_root=root,
            streaming=src.streaming,
        )
        for split_name, entries in split_plan(ds).items()
        for i, src, split in entries
    }
    fingerprints = {f"{name}/{i}/{src.name}": src.fingerprint for (name, i), src in opened.items()}
    key = cache_key(ds, tokenizer, fingerprints, kind)
    target = root / "data" / key[:24]
    build = build_sequences if kind == "sequence" else partial(build_post_training, kind=kind)
    directory, built = build_once(
        target,
        lambda tmp: {**build(ds, tokenizer, opened, tmp, key), "format_version": FORMAT_VERSION},
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
    key = shown_choice(spec.model.chat_template)
    if not tokenizer.chat_template:
        raise ConfigError(
            [
                Problem(
                    key,
                    f"the tokenizer of {spec.model.name} has no chat template to render conversations",
                    "set model.chat_template=chatml (or llama3, a path to a .jinja file, or the Jinja text)",
                )
            ]
        )
    where = masking_break(tokenizer)
    if where:
        raise ConfigError(
            [
                Problem(
                    key,
                    f"the chat template cannot be masked: {where}",
                    "use a template that renders each turn after the ones before it, e.g. model.chat_template=chatml",
                )
            ]
        )


def _shards_intact(directory: Path, manifest: dict) -> bool:
    """Every shard is present with the size and hash the manifest recorded. A manifest that
    lacks a field is damaged too: the cache is rebuilt, never read half-described."""
    try:
        for shards in manifest["shards"].values():
            for name, meta in shards.items():
                path = directory / name
                if not path.is_file() or path.stat().st_size != meta["bytes"] or sha256_of(path) != meta["sha256"]:
                    log.warning("data cache %s is damaged (%s); rebuilding", directory, name)
                    return False
    except (KeyError, TypeError, AttributeError) as missing:
        log.warning("data cache %s has a damaged manifest (%r); rebuilding", directory, missing)
        return False
    return (directory / "report.json").is_file()
