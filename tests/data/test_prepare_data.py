"""The shard cache: keyed on content, atomic, rebuilt when damaged, built once under concurrency."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hydratune.commands.cli import compose_spec
from hydratune.data.errors import DataError
from hydratune.data.packing import pack_lengths, packing_efficiency
from hydratune.data.prepare_data import run_preprocess
from hydratune.data.sources import open_split

from ..conftest import REPO, cpu_env
from .tokenizers_for_tests import tiny_tokenizer


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def rows(n=40, start=0):
    return [{"question": f"What is {i} + 3 ?", "answer": f"It is {i + 3} ."} for i in range(start, start + n)]


def spec_for(data: Path, cache: Path, *extra):
    return compose_spec(
        [
            "model=tiny_llama",
            f"dataset.path={data}",
            "dataset.eval_split=null",
            "eval=[none]",
            "dataset.max_length=64",
            f"run.cache_dir={cache}",
            *extra,
        ],
        env=cpu_env(),
    )


def test_key_changes_with_bytes_tokenizer_template_and_settings_only(tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", rows())
    spec = spec_for(data, tmp_path / "cache")
    tok = tiny_tokenizer()
    first = run_preprocess(spec, tokenizer=tok)
    assert not first.cache_hit
    again = run_preprocess(spec, tokenizer=tok)
    assert again.cache_hit and again.key == first.key

    os.utime(data, (time.time() + 100, time.time() + 100))  # a touch changes no byte
    assert run_preprocess(spec, tokenizer=tok).key == first.key

    keys = {first.key}
    write_jsonl(data, rows(start=1))  # data bytes
    keys.add(run_preprocess(spec, tokenizer=tok).key)
    write_jsonl(data, rows())
    assert run_preprocess(spec, tokenizer=tok).key == first.key  # the same bytes again: the same key

    other_template = tiny_tokenizer()
    other_template.chat_template = other_template.chat_template.replace("<|im_start|>", "<|im_start|> ")
    keys.add(run_preprocess(spec, tokenizer=other_template).key)  # template text

    other_vocab = tiny_tokenizer()
    other_vocab.add_tokens(["brand-new"])
    keys.add(run_preprocess(spec, tokenizer=other_vocab).key)  # tokenizer

    for setting in (
        "dataset.max_length=48",
        "dataset.packing=false",
        "dataset.train_on_inputs=true",
        "dataset.strip_calculator_annotations=true",
        "dataset.eval_fraction=0.1",
    ):
        keys.add(run_preprocess(spec_for(data, tmp_path / "cache", setting), tokenizer=tok).key)
    assert len(keys) == 1 + 1 + 1 + 1 + 5


def test_damaged_cache_is_rebuilt_not_read(tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", rows())
    spec = spec_for(data, tmp_path / "cache")
    built = run_preprocess(spec, tokenizer=tiny_tokenizer())
    shard = next(built.directory.glob("train-*.arrow"))
    shard.write_bytes(shard.read_bytes()[:-10])  # truncated shard
    again = run_preprocess(spec, tokenizer=tiny_tokenizer())
    assert not again.cache_hit
    assert len(again.load("train")) == len(built.load("train"))


def _build_then_die(data: str, cache: str) -> None:
    """Preprocess and get killed while writing the shards."""
    import hydratune.data.sequence_rows as prepare

    original = prepare.write_packed_shards

    def write_and_die(*args, **kwargs):
        result = original(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
        return result

    prepare.write_packed_shards = write_and_die
    run_preprocess(spec_for(Path(data), Path(cache)), tokenizer=tiny_tokenizer())


def test_a_manifest_missing_a_field_is_rebuilt_and_scratch_of_a_killed_build_is_removed(tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", rows())
    spec = spec_for(data, tmp_path / "cache")
    built = run_preprocess(spec, tokenizer=tiny_tokenizer())
    manifest = json.loads((built.directory / "manifest.json").read_text())
    del manifest["shards"]
    (built.directory / "manifest.json").write_text(json.dumps(manifest))
    scratch = built.directory.parent / f".{built.directory.name}.tmp-deadbeef"
    scratch.mkdir()
    (scratch / "train-00000.arrow").write_bytes(b"half")
    again = run_preprocess(spec, tokenizer=tiny_tokenizer())
    assert not again.cache_hit and len(again.load("train")) == len(built.load("train"))
    assert not scratch.exists()


def test_key_covers_the_whole_converter_module(tmp_path, monkeypatch):
    """A change in a helper that a custom converter calls (not the converter itself) rebuilds."""
    module = tmp_path / "my_rows.py"
    module.write_text(
        "def helper(x):\n    return x\n\n\ndef convert(row, options):\n"
        "    return [{'role': 'user', 'content': helper(row['q'])}, {'role': 'assistant', 'content': row['a']}]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    data = write_jsonl(tmp_path / "train.jsonl", [{"q": "Hi", "a": "Hello"}] * 4)
    spec = spec_for(data, tmp_path / "cache", "dataset.format=my_rows:convert")
    first = run_preprocess(spec, tokenizer=tiny_tokenizer())
    module.write_text(module.read_text().replace("return x", "return x.upper()"))
    import sys as _sys

    _sys.modules.pop("my_rows", None)
    assert run_preprocess(spec, tokenizer=tiny_tokenizer()).key != first.key


def test_killed_build_leaves_nothing_read_as_complete(tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", rows())
    cache = tmp_path / "cache"
    proc = multiprocessing.get_context("spawn").Process(target=_build_then_die, args=(str(data), str(cache)))
    proc.start()
    proc.join(120)
    assert proc.exitcode == -signal.SIGKILL
    assert not [p for p in (cache / "data").iterdir() if not p.name.startswith(".") and not p.name.endswith(".lock")]
    after = run_preprocess(spec_for(data, cache), tokenizer=tiny_tokenizer())
    assert not after.cache_hit and len(after.load("train")) > 0


def _preprocess_worker(data: str, cache: str, queue) -> None:
    prepared = run_preprocess(spec_for(Path(data), Path(cache)), tokenizer=tiny_tokenizer())
    queue.put((str(prepared.directory), prepared.cache_hit))


def test_two_concurrent_builders_build_once(tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", rows(400))
    cache = tmp_path / "cache"
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_preprocess_worker, args=(str(data), str(cache), queue)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(60)
    assert len({d for d, _ in results}) == 1
    assert sorted(hit for _, hit in results) == [False, True]  # one built, the other waited and read


def test_held_out_fraction_and_mixture_shares(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", rows(200))
    b = write_jsonl(tmp_path / "b.jsonl", rows(200, start=500))
    spec = spec_for(a, tmp_path / "cache", "dataset.eval_fraction=0.1", f"+dataset.mix=[{{path: '{b}', weight: 3.0}}]")
    report = run_preprocess(spec, tokenizer=tiny_tokenizer()).report
    shares = [m["realized_token_share"] for m in report["mixture"]]
    assert shares[0] == pytest.approx(0.25, abs=0.02) and shares[1] == pytest.approx(0.75, abs=0.02)
    assert report["sources"]["train"][0]["dropped"].get("mixture subsampling", 0) > 100
    assert report["eval"]["sequences"] == round(0.1 * report["train"]["sequences"] / 0.9)


@pytest.mark.parametrize(
    "content,needle",
    [
        (b'{"question": "q", "answer": "a"}\n{"question": broken\n', "train.jsonl:2: bad JSON"),
        (b'{"question": "q", "answer": "a"}\n{"question": "q"}\n', "train.jsonl:2: missing field 'answer'"),
        (b'{"question": "q", "answer": "a"}\n{"question": "caf\xe9", "answer": "a"}\n', "train.jsonl:2: not UTF-8"),
    ],
)
def test_bad_data_names_file_and_line(tmp_path, content, needle):
    (tmp_path / "train.jsonl").write_bytes(content)
    with pytest.raises(DataError) as info:
        run_preprocess(spec_for(tmp_path / "train.jsonl", tmp_path / "cache"), tokenizer=tiny_tokenizer())
    assert needle in str(info.value)


# (format, a bad JSON line, what the error names after file:line, the reason it is counted under with drop)
BAD_ROWS = [
    (
        "alpaca",
        '{"instruction": "Add", "input": 5, "output": "7"}',
        "field 'input' should be text, got int",
        "wrong type",
    ),
    (
        "messages",
        '{"messages": [{"role": ["user"], "content": "x"}, {"role": "assistant", "content": "y"}]}',
        "turn 0 has role ['user']",
        "wrong role",
    ),
    ("pretokenized", '{"input_ids": [3, 4], "labels": 5}', "labels should be a list of integers", "bad token ids"),
    (
        "pretokenized",
        '{"input_ids": [3, 4], "labels": ["a", "b"]}',
        "labels should be a list of integers",
        "bad token ids",
    ),
    ("pretokenized", '{"input_ids": [3, -1]}', "input_ids has 1 id(s) outside the vocabulary", "token id out of range"),
    (
        "pretokenized",
        '{"input_ids": [3, 100000]}',
        "input_ids has 1 id(s) outside the vocabulary",
        "token id out of range",
    ),
    ("pretokenized", '{"input_ids": [3, 4], "labels": [-100, 100000]}', "labels has 1 id(s)", "token id out of range"),
    ("qa", '{"question": broken', "bad JSON", "bad JSON"),
]
GOOD = {
    "alpaca": '{"instruction": "Add 2 and 5", "output": "7"}',
    "messages": '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}',
    "pretokenized": '{"input_ids": [3, 4, 5]}',
    "qa": '{"question": "q", "answer": "a"}',
}


@pytest.mark.parametrize("fmt,line,needle,reason", BAD_ROWS, ids=[f"{r[0]}: {r[3]}" for r in BAD_ROWS])
def test_a_bad_row_is_named_or_dropped_and_counted(fmt, line, needle, reason, tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text(f"{GOOD[fmt]}\n{line}\n{GOOD[fmt]}\n")
    with pytest.raises(DataError) as info:
        run_preprocess(spec_for(data, tmp_path / "cache", f"dataset.format={fmt}"), tokenizer=tiny_tokenizer())
    assert f"train.jsonl:2: {needle}" in str(info.value)
    dropped = run_preprocess(
        spec_for(data, tmp_path / "cache", f"dataset.format={fmt}", "dataset.bad_rows=drop"), tokenizer=tiny_tokenizer()
    )
    source = dropped.report["sources"]["train"][0]
    assert source["dropped"] == {reason: 1} and source["rows_kept"] == 2


def test_an_empty_assistant_turn_is_masked_never_trained(tmp_path):
    """ShareGPT rows scraped with an empty reply in the middle: the turn is kept as context but not
    trained (no lone end-of-turn taught), counted, and refused with bad_rows=error."""
    from hydratune.data.tokenize_examples import IGNORE_INDEX

    turns = [
        {"from": "human", "value": "Hi"},
        {"from": "gpt", "value": ""},
        {"from": "human", "value": "Sum 2 and 5?"},
        {"from": "gpt", "value": "7"},
    ]
    data = write_jsonl(tmp_path / "train.jsonl", [{"conversations": turns}])
    with pytest.raises(DataError, match="train.jsonl:1: turn 1 is an empty assistant reply"):
        run_preprocess(spec_for(data, tmp_path / "cache", "dataset.format=sharegpt"), tokenizer=tiny_tokenizer())
    tok = tiny_tokenizer()
    prepared = run_preprocess(
        spec_for(data, tmp_path / "cache", "dataset.format=sharegpt", "dataset.bad_rows=drop"), tokenizer=tok
    )
    assert prepared.report["sources"]["train"][0]["empty_turns_masked"] == 1
    row = prepared.load("train")[0]
    end_of_turn = tok.convert_tokens_to_ids("<|im_end|>")
    trained = [label for label in row["labels"] if label != IGNORE_INDEX]
    assert trained.count(end_of_turn) == 1 and trained[-1] == end_of_turn, tok.decode(trained)  # only the last reply's


def test_bad_rows_dropped_and_counted_when_allowed(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text('{"question": "What is 2 ?", "answer": "5"}\n{"question": "q"}\n')
    prepared = run_preprocess(spec_for(data, tmp_path / "cache", "dataset.bad_rows=drop"), tokenizer=tiny_tokenizer())
    assert prepared.report["sources"]["train"][0]["dropped"] == {"missing field": 1}


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        run_preprocess(spec_for(tmp_path / "nope.jsonl", tmp_path / "cache"), tokenizer=tiny_tokenizer())


def test_overlong_rows_truncated_or_dropped_and_counted(tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", [{"question": " ".join(["What"] * 80), "answer": "5"}, *rows(5)])
    truncated = run_preprocess(spec_for(data, tmp_path / "cache"), tokenizer=tiny_tokenizer()).report
    # truncation cuts the answer away, so the row has nothing left to train: dropped with that reason
    assert truncated["sources"]["train"][0]["dropped"] == {"no supervised tokens left after truncation": 1}
    dropped = run_preprocess(
        spec_for(data, tmp_path / "cache", "dataset.overlong=drop"), tokenizer=tiny_tokenizer()
    ).report
    assert dropped["sources"]["train"][0]["dropped"] == {"longer than max_length": 1}


@pytest.mark.slow
def test_gsm8k_through_the_real_preprocess_command(gsm8k_dir, tmp_path):
    # A copy of its own: the examples' GSM8K runs share the session's cache, and the cache is keyed on
    # the data's (absolute) path, so this first build would otherwise be their cache hit.
    data = shutil.copytree(gsm8k_dir, tmp_path / "gsm8k")
    cmd = [
        sys.executable,
        "-m",
        "hydratune.commands.preprocess",
        "+experiment=gsm8k_lora",
        f"dataset.path={data}",
        "dataset.max_length=512",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    first = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert first.returncode == 0, first.stderr
    assert "| train | " in first.stdout and "7473 | 7473" in first.stdout and "efficiency" in first.stdout
    assert "[[" in first.stdout  # trained tokens marked (not a terminal)
    logged = first.stdout + first.stderr  # Hydra's job logging decides which stream
    assert "gsm8k/train.jsonl: 7,473 rows (" in logged and "rows/s) in " in logged  # the progress line
    second = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert second.returncode == 0 and "\ncache hit: " in second.stdout

    # Packing efficiency: >= 99% at 512 tokens as built, >= 99.5% at 2048 on the same sequences
    # (every GSM8K row is shorter than 512 tokens, so the lengths are those of a 2048 build).
    directory = Path(first.stdout.split("report: ", 1)[1].split()[0]).parent
    report = json.loads((directory / "report.json").read_text())
    assert report["packing"]["train"]["efficiency"] >= 0.99
    lengths = [n for row in run_preprocess_loaded(directory) for n in row]
    assert len(lengths) == 7473
    assert packing_efficiency(lengths, pack_lengths(lengths, 2048), 2048) >= 0.995


def run_preprocess_loaded(directory: Path):
    import datasets

    manifest = json.loads((directory / "manifest.json").read_text())
    files = [str(directory / name) for name in manifest["shards"]["train"]]
    return datasets.concatenate_datasets([datasets.Dataset.from_file(f) for f in files])["seq_lens"]


def _shard_hashes(prepared) -> dict:
    return {
        split: [meta["sha256"] for meta in shards.values()] for split, shards in prepared.manifest["shards"].items()
    }


def test_shards_are_byte_identical_for_any_number_of_workers(tmp_path):
    # 1,300 chat rows = three tokenizer batches, with bad rows spread over them (dropped and
    # counted in row order) and an eval fraction held out.
    lines = []
    for i in range(1300):
        if i % 97 == 5:
            lines.append('{"messages": [{"role": "user", "content": 5}]}')
        else:
            turns = [
                {"role": "user", "content": f"Add {i} and {i % 7}."},
                {"role": "assistant", "content": f"{i} + {i % 7} = {i + i % 7}."},
            ]
            lines.append(json.dumps({"messages": turns * (1 + i % 3)}))
    data = tmp_path / "chat.jsonl"
    data.write_text("\n".join(lines) + "\n")
    built = {}
    for workers in (1, 2, 3):
        spec = spec_for(
            data,
            tmp_path / f"cache{workers}",
            "dataset.format=messages",
            "dataset.bad_rows=drop",
            "dataset.eval_fraction=0.05",
            f"dataset.num_proc={workers}",
        )
        built[workers] = run_preprocess(spec, tokenizer=tiny_tokenizer())
    assert built[1].key == built[2].key == built[3].key  # the worker count is not part of the key
    assert _shard_hashes(built[1]) == _shard_hashes(built[2]) == _shard_hashes(built[3])
    source = built[2].report["sources"]["train"][0]
    assert source["rows_read"] == 1300 and source["dropped"] == {"wrong type": 14}, source
    assert not list((built[2].directory).glob("_sequences*"))  # the spilled sequences are gone


def test_a_streamed_source_gives_the_shards_of_the_same_rows_read_whole(tmp_path):
    folder = tmp_path / "hub_like"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", rows(300))
    whole = run_preprocess(spec_for(folder, tmp_path / "a"), tokenizer=tiny_tokenizer())
    streamed = run_preprocess(spec_for(folder, tmp_path / "b", "dataset.streaming=true"), tokenizer=tiny_tokenizer())
    assert open_split(str(folder), "train", streaming=True).name.endswith("(streamed)")  # read through datasets' stream
    assert streamed.report["sources"]["train"][0]["rows_read"] == 300
    assert _shard_hashes(streamed) == _shard_hashes(whole)
