"""Shards: Arrow stream files of rows, each recorded in the manifest with its size and hash,
so a reader can tell a whole shard from a damaged one."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

ROWS_PER_SHARD = 8192


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def write_table(table, name: str, out: Path) -> dict[str, Any]:
    import pyarrow as pa

    with pa.OSFile(str(out / name), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return {"rows": table.num_rows, "bytes": (out / name).stat().st_size, "sha256": sha256_of(out / name)}


def shard_name(split: str, k: int, n_shards: int) -> str:
    return f"{split}-{k:05d}-of-{n_shards:05d}.arrow"


def write_shards(rows: list[dict[str, Any]], split: str, out: Path, schema) -> dict[str, dict]:
    """Rows held in memory (post-training rows) as shards."""
    import pyarrow as pa

    n_shards = max(1, -(-len(rows) // ROWS_PER_SHARD))
    shards = {}
    for k in range(n_shards):
        name = shard_name(split, k, n_shards)
        shards[name] = write_table(
            pa.Table.from_pylist(rows[k * ROWS_PER_SHARD : (k + 1) * ROWS_PER_SHARD], schema=schema), name, out
        )
    return shards
