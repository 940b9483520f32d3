"""Raw rows from where the data lives: local files and folders, the Hub, or a generator.

Each row comes with its location (`train.jsonl:42`, `row 17 of openai/gsm8k[test]`)
so that an error about it names the file and line. Each source also has a content
fingerprint, the part of the cache key that changes when the data's bytes change.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from hydratune.data.errors import DataError, RowError
from hydratune.data.synthetic_arithmetic import generated_split_file

LOCAL_SUFFIXES = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv", ".arrow": "arrow"}
GENERATED_PREFIX = "generated:"


@dataclass(frozen=True)
class RawRow:
    location: str
    data: dict[str, Any]
    problem: Optional[RowError] = None  # a row that could not be read (bad JSON): dropped or refused like any bad row


@dataclass(frozen=True)
class RawSource:
    """Rows of one split of one source, read lazily, with their content fingerprint."""

    name: str
    fingerprint: str
    read: Callable[[], Iterator[RawRow]]


def open_split(
    path: str,
    split: str,
    *,
    config_name: str | None = None,
    revision: str | None = None,
    cache_root: Path | None = None,
    streaming: bool = False,
) -> RawSource:
    """The rows of `split` from a generator, a local file or folder, or a Hub dataset
    (streamed, with `streaming`: rows arrive as they are read, nothing is stored whole)."""
    if path.startswith(GENERATED_PREFIX):
        return _local_file(generated_split_file(path[len(GENERATED_PREFIX) :], split, cache_root))
    local = Path(path).expanduser()
    if streaming and (local.is_dir() or not local.exists()):
        return _streamed_split(path, split, config_name, revision)
    if local.is_file():
        return _local_file(local)
    if local.is_dir():
        return _local_folder(local, split)
    if path.startswith((".", "/", "~")) or Path(path).suffix in LOCAL_SUFFIXES:
        raise DataError(
            f"dataset.path={path}: no such file or folder",
            "check the path (relative paths start from where you run the command)",
        )
    return _hub_split(path, split, config_name, revision)


# ---------------------------------------------------------------- local data
def _hash_file(path: Path, digest) -> None:
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)


def _local_file(path: Path) -> RawSource:
    suffix = path.suffix.lower()
    if suffix not in LOCAL_SUFFIXES:
        raise DataError(f"{path}: unknown file type {suffix!r}", f"use one of {', '.join(sorted(LOCAL_SUFFIXES))}")
    digest = hashlib.sha256()
    _hash_file(path, digest)
    if suffix == ".jsonl" or (suffix == ".json" and _looks_like_json_lines(path)):
        return RawSource(str(path), digest.hexdigest(), lambda: _read_json_lines(path))
    if suffix == ".json":
        return RawSource(str(path), digest.hexdigest(), lambda: _read_json_array(path))
    return RawSource(str(path), digest.hexdigest(), lambda: _read_with_datasets(path, LOCAL_SUFFIXES[suffix]))


def _looks_like_json_lines(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(4096).lstrip()
    return not head.startswith(b"[")


def _read_json_lines(path: Path) -> Iterator[RawRow]:
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})", "re-encode the file as UTF-8"
                ) from None
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                yield RawRow(
                    where,
                    {},
                    RowError(
                        "bad JSON",
                        f"bad JSON ({exc.msg} at column {exc.colno})",
                        "fix or remove the line, or set dataset.bad_rows=drop",
                    ),
                )
                continue
            if not isinstance(data, dict):
                yield RawRow(
                    where,
                    {},
                    RowError(
                        "not an object",
                        f"expected a JSON object, got {type(data).__name__}",
                        "write one object per line",
                    ),
                )
                continue
            yield RawRow(where, data)


def _read_json_array(path: Path) -> Iterator[RawRow]:
    try:
        rows = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})", "re-encode the file as UTF-8") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: bad JSON ({exc.msg})", "fix the file") from None
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a JSON array of objects", "or use JSON lines (.jsonl)")
    for i, data in enumerate(rows):
        if not isinstance(data, dict):
            raise DataError(f"{path}: item {i} is not an object", "write an array of objects")
        yield RawRow(f"{path}[{i}]", data)


def _read_with_datasets(path: Path, builder: str) -> Iterator[RawRow]:
    import datasets

    if builder == "arrow":
        ds = datasets.Dataset.from_file(str(path))
    else:
        ds = datasets.load_dataset(builder, data_files=str(path), split="train")
    for i, data in enumerate(ds):
        yield RawRow(f"{path} row {i}", data)


def _local_folder(folder: Path, split: str) -> RawSource:
    """A `save_to_disk` folder, or a folder holding one file per split (train.jsonl, test.parquet...)."""
    if (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file():
        return _saved_to_disk(folder, split)
    candidates = [p for p in sorted(folder.iterdir()) if p.stem == split and p.suffix.lower() in LOCAL_SUFFIXES]
    if not candidates:
        candidates = [
            p for p in sorted(folder.iterdir()) if p.name.startswith(split) and p.suffix.lower() in LOCAL_SUFFIXES
        ]
    if not candidates:
        present = (
            ", ".join(p.name for p in sorted(folder.iterdir()) if p.suffix.lower() in LOCAL_SUFFIXES) or "no data files"
        )
        raise DataError(
            f"{folder}: no file for split '{split}' (found: {present})",
            f"add {split}.jsonl, or set the split to one of the files",
        )
    if len(candidates) > 1:
        raise DataError(
            f"{folder}: several files for split '{split}': {', '.join(p.name for p in candidates)}",
            "keep one file per split",
        )
    return _local_file(candidates[0])


def _saved_to_disk(folder: Path, split: str) -> RawSource:
    import datasets

    loaded = datasets.load_from_disk(str(folder))
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise DataError(
                f"{folder}: no split '{split}' (has {', '.join(loaded)})", f"pick one of {', '.join(loaded)}"
            )
        loaded = loaded[split]
    digest = hashlib.sha256()
    for arrow in sorted(folder.rglob("*.arrow")):
        _hash_file(arrow, digest)
    name = f"{folder}[{split}]"
    return RawSource(name, digest.hexdigest(), lambda: (RawRow(f"{name} row {i}", row) for i, row in enumerate(loaded)))


# ----------------------------------------------------------------------- hub
def _hub_split(name: str, split: str, config_name: str | None, revision: str | None) -> RawSource:
    import datasets

    try:
        ds = datasets.load_dataset(name, config_name, split=split, revision=revision)
    except Exception as exc:  # the Hub client raises many types; the message is what helps
        raise DataError(
            f"dataset.path={name}: could not load split '{split}' from the Hugging Face Hub ({type(exc).__name__}: "
            f"{exc})",
            "check the name, config_name and split, your network, or point dataset.path at a local file",
        ) from None
    label = f"{name}[{split}]"
    # The fingerprint of a Hub dataset is derived from its downloaded files' hashes.
    fingerprint = hashlib.sha256(f"{ds._fingerprint}|{revision}".encode()).hexdigest()
    return RawSource(label, fingerprint, lambda: (RawRow(f"row {i} of {label}", row) for i, row in enumerate(ds)))


def _streamed_split(name: str, split: str, config_name: str | None, revision: str | None) -> RawSource:
    """A Hub dataset (or a folder laid out like one) read as a stream. Its fingerprint is the
    Hub commit it reads (a folder: its files' bytes), so a new commit builds a new cache."""
    import datasets

    try:
        stream = datasets.load_dataset(name, config_name, split=split, revision=revision, streaming=True)
        commit = _folder_digest(Path(name)) if Path(name).is_dir() else _hub_commit(name, revision)
    except Exception as exc:  # the Hub client raises many types; the message is what helps
        raise DataError(
            f"dataset.path={name}: could not stream split '{split}' ({type(exc).__name__}: {exc})",
            "check the name, config_name and split, your network, or point dataset.path at a local file",
        ) from None
    label = f"{name}[{split}] (streamed)"
    fingerprint = hashlib.sha256(f"{commit}|{config_name}|{split}".encode()).hexdigest()
    return RawSource(label, fingerprint, lambda: (RawRow(f"row {i} of {label}", row) for i, row in enumerate(stream)))


def _hub_commit(name: str, revision: str | None) -> str:
    from huggingface_hub import HfApi

    return HfApi().dataset_info(name, revision=revision).sha


def _folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        _hash_file(path, digest)
    return digest.hexdigest()
