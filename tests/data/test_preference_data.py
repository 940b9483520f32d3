"""Post-training rows: preference, unpaired and prompt formats, their tokens, and `preprocess` on them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hydratune.commands.cli import compose_spec
from hydratune.data.errors import DataError, RowError
from hydratune.data.formats import Example, FormatOptions
from hydratune.data.preference_formats import PreferencePair, preference, prompt, prompt_from_conversation, unpaired
from hydratune.data.prepare_data import run_preprocess
from hydratune.data.tokenize_preferences import tokenize_pair, tokenize_unpaired

from ..conftest import REPO, cpu_env, own_cache
from .tokenizers_for_tests import tiny_tokenizer

OPTS = FormatOptions()
USER = {"role": "user", "content": "What is 2 + 3 ?"}


def reply(text):
    return {"role": "assistant", "content": text}


def test_text_pair_becomes_user_prompt_and_assistant_replies():
    pair = preference({"prompt": "What is 2 + 3 ?", "chosen": "It is 5 .", "rejected": "It is 6 ."}, OPTS)
    assert pair == PreferencePair((USER,), (reply("It is 5 ."),), (reply("It is 6 ."),))


def test_whole_conversations_share_their_prompt():
    """UltraFeedback: chosen and rejected repeat the conversation; the prompt is their shared part."""
    system = {"role": "system", "content": "Be brief ."}
    row = {
        "prompt": "ignored when the conversations carry it",
        "chosen": [system, USER, reply("It is 5 .")],
        "rejected": [system, USER, reply("It is 6 .")],
    }
    pair = preference(row, OPTS)
    assert pair.prompt == (system, USER)
    assert pair.chosen == (reply("It is 5 ."),) and pair.rejected == (reply("It is 6 ."),)


@pytest.mark.parametrize(
    "row, what",
    [
        ({"prompt": "Hi", "chosen": "Hello", "rejected": "Hello"}, "chosen and rejected are the same"),
        ({"prompt": "Hi", "chosen": "Hello"}, "missing field 'rejected'"),
        ({"prompt": "Hi", "chosen": [USER], "rejected": "Hello"}, "should start with the assistant's reply"),
        ({"prompt": "Hi", "chosen": [{"role": "bot", "content": "x"}], "rejected": "Hello"}, "has role 'bot'"),
    ],
)
def test_bad_pairs_say_what_is_wrong(row, what):
    with pytest.raises(RowError) as error:
        preference(row, OPTS)
    assert what in error.value.what


def test_unpaired_label_and_prompt_rows():
    row = unpaired({"prompt": "Hi", "completion": "Hello", "label": "undesirable"}, OPTS)
    assert row.desirable is False and row.completion == (reply("Hello"),)
    with pytest.raises(RowError, match="field .label. is .maybe."):
        unpaired({"prompt": "Hi", "completion": "Hello", "label": "maybe"}, OPTS)
    assert prompt({"prompt": "Hi", "answer": "#### 5"}, OPTS).answer == "#### 5"
    conversation = prompt_from_conversation(Example(messages=(USER, reply("It is 5 .\n#### 5"))))
    assert conversation.prompt == (USER,) and conversation.answer == "It is 5 .\n#### 5"


def test_pair_tokens_split_at_the_prompt_and_end_at_the_end_of_turn():
    tok = tiny_tokenizer()
    pair = preference({"prompt": "What is 2 + 3 ?", "chosen": "It is 5 .", "rejected": "It is 6 ."}, OPTS)
    row, event = tokenize_pair(tok, pair, max_length=64, overlong="truncate")
    assert event is None
    assert (
        tok.decode(row["prompt_ids"]).split()
        == "<|im_start|> user What is 2 + 3 ? <|im_end|> <|im_start|> assistant".split()
    )
    assert tok.decode(row["chosen_ids"]).split() == ["It", "is", "5", ".", "<|im_end|>"]
    assert tok.decode(row["rejected_ids"]).split() == ["It", "is", "6", ".", "<|im_end|>"]

    cut, event = tokenize_pair(tok, pair, max_length=len(row["prompt_ids"]) + 3, overlong="truncate")
    assert event == "truncated" and len(cut["chosen_ids"]) == 3 and cut["prompt_ids"] == row["prompt_ids"]
    assert tokenize_pair(tok, pair, max_length=len(row["prompt_ids"]) + 2, overlong="truncate") == (
        None,
        "chosen and rejected identical after truncation",
    )  # "It is" both: no preference left
    assert tokenize_pair(tok, pair, max_length=len(row["prompt_ids"]) + 2, overlong="drop") == (
        None,
        "longer than max_length",
    )
    assert tokenize_pair(tok, pair, max_length=len(row["prompt_ids"]), overlong="truncate") == (
        None,
        "prompt longer than max_length",
    )


def test_unpaired_tokens():
    tok = tiny_tokenizer()
    row, _ = tokenize_unpaired(
        tok, unpaired({"prompt": "Hi", "completion": "Hello", "label": True}, OPTS), 64, "truncate"
    )
    assert tok.decode(row["completion_ids"]).split() == ["Hello", "<|im_end|>"] and row["label"] is True


def _write(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _pairs(n):
    return [
        {"prompt": f"What is {i} + 3 ?", "chosen": f"It is {i + 3} .", "rejected": f"It is {i + 4} ."} for i in range(n)
    ]


def test_method_and_format_must_agree_before_any_work(tmp_path):
    from hydratune.config.problems import ConfigError

    data = _write(tmp_path / "pairs.jsonl", _pairs(4))
    with pytest.raises(ConfigError) as error:
        compose_spec(
            ["model=tiny_llama", "method=dpo", f"dataset.path={data}", "dataset.eval_split=null", "eval=[none]"],
            env=cpu_env(),
        )
    assert "dataset.format=qa: method=dpo cannot train on it" in str(error.value) and "one of: preference" in str(
        error.value
    )
    with pytest.raises(ConfigError, match="method.loss_type=sigmod"):
        compose_spec(
            [
                "model=tiny_llama",
                "method=dpo",
                "method.loss_type=sigmod",
                "dataset.format=preference",
                f"dataset.path={data}",
                "dataset.eval_split=null",
                "eval=[none]",
            ],
            env=cpu_env(),
        )


def test_kto_splits_pairs_and_the_cache_is_keyed_by_row_kind(tmp_path):
    data = _write(tmp_path / "pairs.jsonl", _pairs(10))
    base = [
        "model=tiny_llama",
        "dataset.format=preference",
        f"dataset.path={data}",
        "dataset.eval_split=null",
        "eval=[none]",
        f"run.cache_dir={own_cache(tmp_path / 'cache')}",
        "train.micro_batch_size=2",
    ]
    dpo = run_preprocess(compose_spec([*base, "method=dpo"], env=cpu_env()))
    kto = run_preprocess(compose_spec([*base, "method=kto"], env=cpu_env()))
    assert dpo.key != kto.key
    assert len(dpo.load("train")) == 10 and set(dpo.load("train").column_names) == {
        "prompt_ids",
        "chosen_ids",
        "rejected_ids",
    }
    rows = kto.load("train")
    assert len(rows) == 20 and sum(rows["label"]) == 10
    assert kto.report["train"]["desirable"] == 10


def test_preprocess_command_reports_a_pair_with_its_masks(tmp_path):
    data = _write(tmp_path / "pairs.jsonl", _pairs(12) + [{"prompt": "Hi", "chosen": "Hello", "rejected": "Hello"}])
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    args = [
        sys.executable,
        "-m",
        "hydratune.commands.preprocess",
        "model=tiny_llama",
        "method=dpo",
        "dataset.format=preference",
        f"dataset.path={data}",
        "dataset.eval_split=null",
        "eval=[none]",
        f"run.cache_dir={own_cache(tmp_path / 'cache')}",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    failed = subprocess.run(args, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert failed.returncode != 0
    assert (
        "pairs.jsonl:13" in failed.stderr + failed.stdout and "dataset.bad_rows=drop" in failed.stderr + failed.stdout
    )

    done = subprocess.run(
        [*args, "dataset.bad_rows=drop"], capture_output=True, text=True, cwd=REPO, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "| prompt |" in out and "| chosen |" in out and "| rejected |" in out
    assert "1 identical replies" in out and "not packed" in out
    assert "### chosen" in out and "[[" in out  # the reply is marked as trained, the prompt is not


def test_wrong_custom_row_kind_names_the_row(tmp_path):
    data = _write(tmp_path / "qa.jsonl", [{"question": "Hi", "answer": "Hello"}])
    spec = compose_spec(
        [
            "model=tiny_llama",
            "method=dpo",
            "dataset.format=tests.data.test_preference_data:as_example",
            f"dataset.path={data}",
            "dataset.eval_split=null",
            "eval=[none]",
            f"run.cache_dir={own_cache(tmp_path / 'c')}",
        ],
        env=cpu_env(),
    )
    with pytest.raises(DataError, match=r"qa.jsonl:1: the format gives Example"):
        run_preprocess(spec)


def as_example(row, options):
    return [{"role": "user", "content": row["question"]}, {"role": "assistant", "content": row["answer"]}]
