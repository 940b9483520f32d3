"""Per format: exact token ids and label masks, against SmolLM2's tokenizer and a tiny one."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest

from hydratune.cache_dirs import cache_root
from hydratune.config.spec import ModelSpec
from hydratune.data.errors import RowError
from hydratune.data.format_registry import FORMATS, resolve_format
from hydratune.data.formats import FormatOptions
from hydratune.data.tokenize_examples import IGNORE_INDEX, MaskPolicy, tokenize_batch
from hydratune.models.model_loading import load_tokenizer

from .tokenizers_for_tests import VOCAB, tiny_tokenizer

V = VOCAB
DEFAULT = MaskPolicy()


@pytest.fixture(scope="module")
def smol():
    return load_tokenizer(ModelSpec(name="embedded:smollm2-135m-instruct"), cache_root())


class Tokens(NamedTuple):
    input_ids: list[int]
    labels: list[int]


def encode(tok, fmt, row, policy=DEFAULT, **options) -> Tokens:
    """The sequence's ids and labels as lists; they are int32 arrays, as the shards store them."""
    example = FORMATS[fmt](row, FormatOptions(**options))
    seq = tokenize_batch(tok, [example], policy)[0]
    assert seq.input_ids.dtype == seq.labels.dtype == np.int32
    return Tokens(seq.input_ids.tolist(), seq.labels.tolist())


def trained_text(tok, seq):
    return tok.decode([t for t, label in zip(seq.input_ids, seq.labels) if label != IGNORE_INDEX])


def test_qa_exact_ids_and_mask_tiny():
    seq = encode(tiny_tokenizer(), "qa", {"question": "What is 2 + 3 ?", "answer": "5"})
    S, E = V["<|im_start|>"], V["<|im_end|>"]
    # ChatML: <|im_start|>user\nWhat is 2 + 3 ?<|im_end|>\n<|im_start|>assistant\n5<|im_end|>\n
    assert seq.input_ids == [
        S,
        V["user"],
        V["What"],
        V["is"],
        V["2"],
        V["+"],
        V["3"],
        V["?"],
        E,
        S,
        V["assistant"],
        V["5"],
        E,
    ]
    assert seq.labels == [IGNORE_INDEX] * 11 + [V["5"], E]


def test_qa_exact_ids_and_mask_smollm2(smol):
    seq = encode(smol, "qa", {"question": "What is 2+3?", "answer": "5"})
    # SmolLM2's template injects its default system prompt; it is never trained.
    assert seq.input_ids[:3] == [1, 9690, 198]  # <|im_start|>system\n
    assert seq.input_ids[-9:] == [
        2,
        198,
        1,
        520,
        9531,
        198,
        37,
        2,
        198,
    ]  # ...<|im_end|>\n<|im_start|>assistant\n5<|im_end|>\n
    assert seq.labels[-3:] == [37, 2, IGNORE_INDEX]  # the answer and its end-of-turn token; not the newline
    assert all(label == IGNORE_INDEX for label in seq.labels[:-3])
    assert len(seq.input_ids) == 40


def test_calculator_annotations_stripped(smol):
    seq = encode(
        smol, "qa", {"question": "q?", "answer": "48/2 = <<48/2=24>>24\n#### 24"}, strip_calculator_annotations=True
    )
    assert trained_text(smol, seq) == "48/2 = 24\n#### 24<|im_end|>"


def test_field_mapping():
    seq = encode(
        tiny_tokenizer(),
        "qa",
        {"prompt": "Hi", "response": "Hello"},
        fields={"question": "prompt", "answer": "response"},
    )
    assert [t for t, label in zip(seq.input_ids, seq.labels) if label != IGNORE_INDEX] == [V["Hello"], V["<|im_end|>"]]


def test_alpaca_joins_instruction_and_input(smol):
    seq = encode(smol, "alpaca", {"instruction": "Add numbers", "input": "2 3", "output": "5"})
    text = smol.decode(seq.input_ids)
    assert "Add numbers\n\n2 3<|im_end|>" in text
    assert trained_text(smol, seq) == "5<|im_end|>"


def test_multi_turn_messages_train_every_assistant_turn(smol):
    row = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is 2+3?"},
            {"role": "assistant", "content": "5"},
            {"role": "user", "content": "And times 6?"},
            {"role": "assistant", "content": "30"},
        ]
    }
    seq = encode(smol, "messages", row)
    assert trained_text(smol, seq) == "5<|im_end|>30<|im_end|>"
    assert "You are a helpful AI assistant" not in smol.decode(seq.input_ids)  # own system prompt replaces the default
    everything = encode(smol, "messages", row, policy=MaskPolicy(train_on_inputs=True))
    assert "Be brief." in trained_text(smol, everything) and "And times 6?" in trained_text(smol, everything)
    users_too = encode(smol, "messages", row, policy=MaskPolicy(train_roles=("assistant", "user")))
    assert "And times 6?" in trained_text(smol, users_too) and "Be brief." not in trained_text(smol, users_too)


def test_sharegpt_maps_roles(smol):
    row = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}
    assert trained_text(smol, encode(smol, "sharegpt", row)) == "Hello<|im_end|>"


def test_completion_trains_all_and_appends_eos():
    tok = tiny_tokenizer()
    seq = encode(tok, "completion", {"text": "What is 2"})
    assert seq.input_ids == [V["What"], V["is"], V["2"], V["<|im_end|>"]]
    assert seq.labels == [IGNORE_INDEX, V["is"], V["2"], V["<|im_end|>"]]  # the first token is never predicted


def test_pretokenized_keeps_ids_and_labels():
    seq = encode(tiny_tokenizer(), "pretokenized", {"input_ids": [5, 6, 7], "labels": [-100, 6, 7]})
    assert seq.input_ids == [5, 6, 7] and seq.labels == [IGNORE_INDEX, 6, 7]


@pytest.mark.parametrize(
    "fmt,row,reason",
    [
        ("qa", {"question": "q"}, "missing field"),
        ("messages", {"messages": []}, "empty conversation"),
        ("messages", {"messages": [{"role": "robot", "content": "x"}]}, "wrong role"),
        ("messages", {"messages": [{"role": "user", "content": "x"}]}, "no assistant turn"),
        ("sharegpt", {"conversations": [{"from": "alien", "value": "x"}]}, "wrong role"),
        ("pretokenized", {"input_ids": [1, 2], "labels": [1]}, "bad token ids"),
        ("completion", {"text": 5}, "wrong type"),
        ("alpaca", {"instruction": "Add", "input": 5, "output": "7"}, "wrong type"),
        (
            "messages",
            {"messages": [{"role": ["user"], "content": "x"}, {"role": "assistant", "content": "y"}]},
            "wrong role",
        ),
        ("pretokenized", {"input_ids": [1, 2], "labels": 5}, "bad token ids"),
        ("pretokenized", {"input_ids": [1, 2], "labels": ["a", "b"]}, "bad token ids"),
        (
            "sharegpt",
            {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": " "}]},
            "empty reply",
        ),
    ],
)
def test_bad_rows_raise_with_reason(fmt, row, reason):
    with pytest.raises(RowError) as info:
        FORMATS[fmt](row, FormatOptions())
    assert info.value.reason == reason


def test_custom_format_by_import_path(tmp_path, monkeypatch):
    (tmp_path / "my_formats.py").write_text(
        "def reverse(row, options):\n    return [{'role': 'user', 'content': row['a']}, "
        "{'role': 'assistant', 'content': row['b']}]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    example = resolve_format("my_formats:reverse")({"a": "Hi", "b": "Hello"}, FormatOptions())
    assert [m["role"] for m in example.messages] == ["user", "assistant"]


@pytest.mark.parametrize("which", ["tiny", "smollm2"])
def test_the_direct_fast_tokenizer_call_gives_the_ids_and_token_ranges_of_the_plain_call(which):
    """Every span edge (token starts, inside tokens, spaces, multi-byte characters, the end) maps to
    the token range that bisecting the plain call's offsets gives."""
    import bisect

    from hydratune.data.tokenize_examples import encode_with_bounds

    tok = (
        tiny_tokenizer()
        if which == "tiny"
        else load_tokenizer(ModelSpec(name="embedded:smollm2-135m-instruct"), cache_root())
    )
    assert (
        tok.backend_tokenizer.truncation is None and tok.backend_tokenizer.padding is None
    )  # the direct path is taken
    texts = ["Hello world", "  spaces  and\nnew lines ", "", "émoji 🙂 and ünïcode", "<|im_start|>user\nHi<|im_end|>"]
    spans = [[(b, e) for b in range(len(t) + 1) for e in range(b, len(t) + 1)] for t in texts]
    plain = tok(texts, add_special_tokens=False, return_offsets_mapping=True)
    expected = []
    for ids, offsets, text_spans in zip(plain["input_ids"], plain["offset_mapping"], spans):
        starts = [start for start, _ in offsets]
        ranges = [(bisect.bisect_left(starts, b), bisect.bisect_left(starts, e)) for b, e in text_spans]
        expected.append((list(ids), ranges))
    assert encode_with_bounds(tok, texts, spans) == expected
