"""Tokenized sequences spilled to disk while a cache is built, read back by index.

Building a cache holds only each sequence's length and supervised-token count in memory;
each sequence's token ids and then its labels are appended, batch by batch, to one flat
int32 file and read back with one positioned read per sequence (scattered into the two
arrays) when the packed rows are written. Peak memory is then set by the batch and shard
sizes, not by the size of the dataset.

Not a memory map: the packer reads sequences in shuffled order, and every page of a
mapping it touches stays resident in the process, so the RSS grew with the dataset
(releasing pages after each shard did not help; bench/preprocess_scale.py measures the
peak). Reads go through the page cache, which the kernel owns and drops as needed.
"""

from __future__ import annotations

import os
from array import array
from pathlib import Path
from typing import Iterable

import numpy as np

from hydratune.data.tokenize_examples import IGNORE_INDEX

_INT32 = np.dtype(np.int32).itemsize


class SequenceWriter:
    """Appends (input_ids, labels) pairs to the file `path`; keeps their lengths and supervised counts."""

    def __init__(self, path: Path):
        self.path = path
        self._file = open(path, "wb")
        self.lengths = array("i")
        self.supervised = array("i")

    def add(self, sequences: Iterable[tuple[np.ndarray, np.ndarray]]) -> None:
        parts = []
        for seq_ids, seq_labels in sequences:
            parts += (seq_ids, seq_labels)
            self.lengths.append(len(seq_ids))
            self.supervised.append(int(np.count_nonzero(seq_labels != IGNORE_INDEX)))
        if parts:
            self._file.write(np.concatenate(parts).astype(np.int32, copy=False).tobytes())

    def close(self) -> SequenceStore:
        self._file.close()
        return SequenceStore(
            self.path, np.frombuffer(self.lengths, dtype=np.int32), np.frombuffer(self.supervised, dtype=np.int32)
        )


class SequenceStore:
    """The sequences of one source on disk; `sequence(i)` reads the i-th back."""

    def __init__(self, path: Path, lengths: np.ndarray, supervised: np.ndarray):
        self.path, self.lengths, self.supervised = path, lengths, supervised
        self._starts = np.zeros(len(lengths) + 1, dtype=np.int64)  # in tokens: each sequence holds 2 x its length
        np.cumsum(lengths, out=self._starts[1:])
        self._starts *= 2
        # Opened here, not on first read: the packed rows' shards read from several threads.
        self._fd: int | None = os.open(path, os.O_RDONLY)

    def __len__(self) -> int:
        return len(self.lengths)

    def sequence(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        ids, labels = np.empty((2, int(self.lengths[i])), dtype=np.int32)
        self.read_into(i, ids, labels)
        return ids, labels

    def read_into(self, i: int, ids: np.ndarray, labels: np.ndarray) -> None:
        """Sequence i's ids and labels read straight into two int32 arrays of its length."""
        if self._fd is None:
            raise ValueError(f"{self.path}: the spill is closed")
        if os.preadv(self._fd, [ids, labels], int(self._starts[i]) * _INT32) != ids.nbytes + labels.nbytes:
            raise OSError(f"{self.path}: sequence {i} is cut short in the spill")

    def close(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            self._fd = None

    __del__ = close  # a build that fails part-way leaves no descriptors open
