"""The spill a cache build reads back: sequences come back by index as written, and the pages
read can be released so the process's memory does not grow with the dataset."""

from pathlib import Path

import numpy as np

from hydratune.data.sequence_store import SequenceWriter


def _rss_file_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1]) / 1024
    raise KeyError("RssFile")


def test_sequences_read_back_by_index_and_released(tmp_path):
    rng = np.random.default_rng(0)
    writer = SequenceWriter(tmp_path / "spill.arrow")
    written = []
    for _ in range(40):  # 40 batches of 200 sequences of ~2k tokens: ~128 MB of ids and labels
        batch = [(rng.integers(0, 50_000, n, dtype=np.int32), rng.integers(-100, 50_000, n, dtype=np.int32))
                 for n in rng.integers(1, 4000, 200)]
        writer.add(batch)
        written.extend(batch)
    store = writer.close()
    assert len(store) == len(written)
    assert store.lengths.tolist() == [len(ids) for ids, _ in written]
    assert store.supervised.tolist() == [int((labels != -100).sum()) for _, labels in written]

    before = _rss_file_mb()
    for i in rng.permutation(len(written)):  # packing reads in shuffled bin order
        ids, labels = store.sequence(int(i))
        np.testing.assert_array_equal(ids, written[i][0])
        np.testing.assert_array_equal(labels, written[i][1])
    touched = _rss_file_mb() - before
    assert touched > 100, f"reading the spill touched only {touched:.0f} MB of mapped pages"
    store.release()
    assert _rss_file_mb() - before < 10, "released pages are still resident"
    ids, labels = store.sequence(7)  # and they read back after a release
    np.testing.assert_array_equal(ids, written[7][0])
