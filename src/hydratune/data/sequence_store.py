"""Tokenized sequences spilled to an Arrow file while a cache is built, read back by index.

Building a cache holds only each sequence's length and supervised-token count in memory;
the token ids and labels go to disk batch by batch and come back memory-mapped when the
packed rows are written. Peak memory is then set by the batch and shard sizes, not by the
size of the dataset: the writer releases the mapped pages it has read after each shard
(`release`), since pages of a mapping stay resident in the process once touched.
"""

from __future__ import annotations

import bisect
import mmap
from array import array
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa

from hydratune.data.tokenize_examples import IGNORE

_SCHEMA = pa.schema([("input_ids", pa.list_(pa.int32())), ("labels", pa.list_(pa.int32()))])


def list_column(rows: Sequence[np.ndarray]) -> pa.ListArray:
    """One Arrow list<int32> column from numpy rows, without going through Python lists."""
    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum([len(r) for r in rows], out=offsets[1:])
    values = np.concatenate(rows).astype(np.int32, copy=False) if rows else np.zeros(0, dtype=np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))


class SequenceWriter:
    """Appends (input_ids, labels) pairs to `path`; keeps their lengths and supervised counts."""

    def __init__(self, path: Path):
        self.path = path
        self._sink = pa.OSFile(str(path), "wb")
        self._writer = pa.ipc.new_file(self._sink, _SCHEMA)
        self.lengths = array("i")
        self.supervised = array("i")

    def add(self, sequences: Iterable[tuple[np.ndarray, np.ndarray]]) -> None:
        ids, labels = [], []
        for seq_ids, seq_labels in sequences:
            ids.append(seq_ids)
            labels.append(seq_labels)
            self.lengths.append(len(seq_ids))
            self.supervised.append(int(np.count_nonzero(seq_labels != IGNORE)))
        if ids:
            self._writer.write_batch(pa.record_batch([list_column(ids), list_column(labels)], schema=_SCHEMA))

    def close(self) -> SequenceStore:
        self._writer.close()
        self._sink.close()
        return SequenceStore(self.path, np.frombuffer(self.lengths, dtype=np.int32), np.frombuffer(self.supervised, dtype=np.int32))


class SequenceStore:
    """The sequences of one source, memory-mapped; `sequence(i)` is zero-copy."""

    def __init__(self, path: Path, lengths: np.ndarray, supervised: np.ndarray):
        self.path, self.lengths, self.supervised = path, lengths, supervised
        self._batches: list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
        self._starts: list[int] = []
        self._map: mmap.mmap | None = None

    def __len__(self) -> int:
        return len(self.lengths)

    def _open(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        if self._batches is None:
            # Python's mmap rather than pyarrow's: it can tell the kernel to drop resident pages.
            with open(self.path, "rb") as f:
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            reader = pa.ipc.open_file(pa.BufferReader(pa.py_buffer(self._map)))
            self._batches, start = [], 0
            for k in range(reader.num_record_batches):
                batch = reader.get_batch(k)
                ids, labels = batch.column(0), batch.column(1)
                self._batches.append((ids.offsets.to_numpy(), ids.values.to_numpy(), labels.values.to_numpy()))
                self._starts.append(start)
                start += batch.num_rows
        return self._batches

    def sequence(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        batches = self._open()
        b = bisect.bisect_right(self._starts, i) - 1
        offsets, ids, labels = batches[b]
        lo, hi = offsets[i - self._starts[b]], offsets[i - self._starts[b] + 1]
        return ids[lo:hi], labels[lo:hi]

    def release(self) -> None:
        """Drop the pages read so far from this process's resident memory; they stay in the
        page cache and come back on the next read. Without this the RSS of a cache build grows
        by the size of the spill (8 bytes a token) as packing reads it back."""
        if self._map is not None and hasattr(mmap, "MADV_DONTNEED"):
            self._map.madvise(mmap.MADV_DONTNEED)
