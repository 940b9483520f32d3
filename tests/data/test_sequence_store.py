"""The spill a cache build reads back: sequences come back by index as written, and reading
them leaves nothing of the file resident in the process (its memory must not grow with the
dataset; a memory map kept every touched page)."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import hydratune.data.sequence_rows as sequence_rows
from hydratune.data.sequence_store import SequenceWriter


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def test_sequences_read_back_by_index_without_growing_memory(tmp_path):
    rng = np.random.default_rng(0)
    writer = SequenceWriter(tmp_path / "spill")
    written = []
    for _ in range(40):  # 40 batches of 200 sequences of ~2k tokens: ~128 MB of ids and labels
        batch = [
            (rng.integers(0, 50_000, n, dtype=np.int32), rng.integers(-100, 50_000, n, dtype=np.int32))
            for n in rng.integers(1, 4000, 200)
        ]
        writer.add(batch)
        written.extend(batch)
    store = writer.close()
    assert len(store) == len(written)
    assert store.lengths.tolist() == [len(ids) for ids, _ in written]
    assert store.supervised.tolist() == [int((labels != -100).sum()) for _, labels in written]

    before = _rss_mb("RssFile") + _rss_mb("RssAnon")
    for i in rng.permutation(len(written)):  # packing reads in shuffled bin order
        ids, labels = store.sequence(int(i))
        np.testing.assert_array_equal(ids, written[i][0])
        np.testing.assert_array_equal(labels, written[i][1])
    grown = _rss_mb("RssFile") + _rss_mb("RssAnon") - before
    assert grown < 20, f"reading 128 MB of spilled sequences left {grown:.0f} MB resident"
    store.close()


def test_packed_shards_hold_the_binned_sequences_in_order(tmp_path, monkeypatch):
    """Shards are built two at a time on threads: each must still hold its own rows, in order,
    and a spill cut short must fail the build, not leave a shard with missing tokens."""
    monkeypatch.setattr(sequence_rows, "ROWS_PER_SHARD", 3)
    rng = np.random.default_rng(1)
    writer = SequenceWriter(tmp_path / "spill")
    written = [
        (rng.integers(0, 50_000, n, dtype=np.int32), rng.integers(-100, 50_000, n, dtype=np.int32))
        for n in rng.integers(1, 40, 50)
    ]
    writer.add(written)
    store = writer.close()
    bins = [list(range(i, min(i + 3, 50))) for i in range(0, 50, 3)][::-1]  # 17 rows: 6 shards
    out = tmp_path / "out"
    out.mkdir()
    shards = sequence_rows.write_packed_shards(bins, [(0, i) for i in range(50)], [store], "train", out)
    assert list(shards) == [f"train-{k:05d}-of-00006.arrow" for k in range(6)]
    rows = []
    for name in shards:
        with pa.OSFile(str(out / name)) as source:
            rows += pa.ipc.open_stream(source).read_all().to_pylist()
    assert len(rows) == len(bins)
    for row, members in zip(rows, bins):
        assert row["seq_lens"] == [len(written[i][0]) for i in members]
        assert row["input_ids"] == np.concatenate([written[i][0] for i in members]).tolist()
        assert row["labels"] == np.concatenate([written[i][1] for i in members]).tolist()

    (tmp_path / "spill").write_bytes((tmp_path / "spill").read_bytes()[:-8])  # the last sequence cut short
    with pytest.raises(OSError, match="sequence 49 is cut short"):
        sequence_rows.write_packed_shards(bins, [(0, i) for i in range(50)], [store], "train", tmp_path / "out")
    store.close()
