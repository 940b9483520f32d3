"""`hydratune-chat` through its installed console script: one-shot and interactive, with a
run's own system prompt and template."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ..conftest import REPO

pytestmark = pytest.mark.slow

EMBEDDED = "embedded:smollm2-135m-instruct"


def chat(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [shutil.which("hydratune-chat"), *args], input=stdin, capture_output=True, text=True, cwd=REPO, timeout=600
    )


def greedy_reply(model_dir_or_name: str, messages: list[dict], max_new_tokens: int) -> str:
    """What plain transformers answers, for comparison."""
    import torch

    from hydratune.cache_dirs import cache_root
    from hydratune.config.spec import ModelSpec
    from hydratune.models.model_loading import load_base_model, load_tokenizer

    spec = ModelSpec(name=model_dir_or_name)
    tokenizer = load_tokenizer(spec, cache_root())
    model = load_base_model(spec, cache_root(), dtype=torch.float32, attn_implementation="sdpa").eval()
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def test_one_shot_prompt_answers_on_stdout():
    out = chat(EMBEDDED, "--prompt", "What is 2+3?", "--max-new-tokens", "8")
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == greedy_reply(EMBEDDED, [{"role": "user", "content": "What is 2+3?"}], 8)
    assert "5" in out.stdout


def test_interactive_chat_keeps_history_until_reset():
    question, follow_up = "What is 2+3?", "And times 2?"
    out = chat(EMBEDDED, "--max-new-tokens", "8", stdin=f"{question}\n{follow_up}\n/reset\n{question}\n/exit\n")
    assert out.returncode == 0, out.stderr[-3000:]
    replies = [part.split("\n\nyou> ")[0].strip() for part in out.stdout.split("model> ")[1:]]
    first = greedy_reply(EMBEDDED, [{"role": "user", "content": question}], 8)
    second = greedy_reply(
        EMBEDDED,
        [
            {"role": "user", "content": question},
            {"role": "assistant", "content": first},
            {"role": "user", "content": follow_up},
        ],
        8,
    )
    assert replies == [first, second, first], out.stdout
    assert "(conversation cleared)" in out.stdout


def test_a_run_directory_chats_with_merged_and_the_runs_system_prompt(tmp_path):
    from ..training.runs import train

    system = "Answer in one word."
    result = train(tmp_path / "run", "train.max_steps=1", f"dataset.system_prompt='{system}'")
    merged = tmp_path / "run" / "merged"
    # the run's closing summary names this command first among the next steps
    assert "hydratune: run complete" in result.stdout
    (suggested,) = [
        line.split("next", 1)[1].split("#")[0].split()
        for line in result.stdout.splitlines()
        if line.startswith("  next ")
    ]
    assert suggested[0] == "hydratune-chat" and Path(suggested[1]).resolve() == (tmp_path / "run").resolve()
    spec = json.loads((tmp_path / "run" / "spec.json").read_text())
    assert spec["dataset"]["system_prompt"] == system
    out = chat(suggested[1], "--prompt", "Hello", "--max-new-tokens", "6")
    assert out.returncode == 0, out.stderr[-3000:]
    expected = greedy_reply(
        str(merged), [{"role": "system", "content": system}, {"role": "user", "content": "Hello"}], 6
    )
    assert out.stdout.strip() == expected


def test_a_missing_target_exits_2_naming_it(tmp_path):
    out = chat(str(tmp_path / "nowhere"), "--prompt", "hi")
    assert out.returncode == 2
    assert str(tmp_path / "nowhere") in out.stderr and "Traceback" not in out.stderr


def base_model_without_end_of_turn(folder: Path) -> tuple[Path, str]:
    """The embedded SmolLM2 as a base model would ship: EOS is <|endoftext|> and there is no chat template,
    though its weights still end each reply with <|im_end|> and then write the user's next turn. Also
    returns the template it was trained with (ChatML with a default system prompt)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hydratune.cache_dirs import cache_root
    from hydratune.config.spec import ModelSpec
    from hydratune.models.model_loading import model_location

    source = model_location(ModelSpec(name=EMBEDDED), cache_root())
    tokenizer = AutoTokenizer.from_pretrained(source)
    template = tokenizer.chat_template
    tokenizer.eos_token = "<|endoftext|>"
    tokenizer.chat_template = None
    model = AutoModelForCausalLM.from_pretrained(source)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, template


def test_replies_stop_at_the_end_of_turn_for_an_adapter_and_a_model_folder(tmp_path):
    """Only merged/ carries the end-of-turn token in its generation config; every target stops there.
    The adapter is LoRA's initialization (B = 0), saved with the template training set (model.chat_template)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base, template = base_model_without_end_of_turn(tmp_path / "base")
    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.chat_template = template
    adapter = tmp_path / "adapter"
    get_peft_model(
        AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=4, target_modules="all-linear")
    ).save_pretrained(adapter)
    tokenizer.save_pretrained(adapter)
    with_template = tmp_path / "with-template"
    shutil.copytree(base, with_template)
    tokenizer.save_pretrained(with_template)
    model = AutoModelForCausalLM.from_pretrained(base).eval()
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2 + 3?"}],
        add_generation_prompt=True,
        return_dict=True,
        return_tensors="pt",
    )
    ids = model.generate(**inputs, max_new_tokens=60, do_sample=False)[0, inputs["input_ids"].shape[1] :].tolist()
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert end in ids and len(ids) > ids.index(end) + 1  # the model goes on past its end of turn
    first_turn = tokenizer.decode(ids[: ids.index(end)], skip_special_tokens=True).strip()
    for target in (adapter, with_template):
        out = chat(str(target), "--prompt", "What is 2 + 3?", "--max-new-tokens", "60")
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip() == first_turn, out.stdout  # and not the user's next turn
