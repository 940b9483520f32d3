"""`model.chat_template`: the tokenizer's own, a name, a .jinja file or Jinja text; checked
before any row is tokenized; saved with the tokenizer into adapter/ and merged/."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from hydratune.cache_dirs import cache_root
from hydratune.commands.cli import compose_spec
from hydratune.config.problems import ConfigError
from hydratune.models.chat_templates import CHAT_TEMPLATES, masking_break, template_problem, template_source

from ..conftest import REPO, cpu_env
from ..data.tokenizers_for_tests import tiny_tokenizer

# ChatML with a marker, so a rendering shows which template made it.
MARKED = (
    CHAT_TEMPLATES["chatml"]
    .replace("'<|im_start|>' + message['role']", "'<|im_start|>' + message['role'] + ' [marked]'")
    .replace("'<|im_start|>assistant\n'", "'<|im_start|>assistant [marked]\n'")
)
# Like reasoning templates that drop earlier assistant turns: a turn renders differently once
# later ones follow, so its tokens cannot be found by rendering the conversation up to it.
FORGETFUL = (
    "{% for m in messages %}{% if m['role'] == 'assistant' and not loop.last %}"
    "{{ '<|im_start|>assistant\n<|im_end|>\n' }}{% else %}"
    "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def test_a_choice_is_a_name_a_file_or_jinja_text(tmp_path):
    path = tmp_path / "marked.jinja"
    path.write_text(MARKED)
    assert template_source(None) is None
    assert template_source("chatml") == CHAT_TEMPLATES["chatml"]
    assert template_source(str(path)) == MARKED
    assert template_source(MARKED) == MARKED
    for good in ("chatml", str(path), MARKED):
        assert template_problem(good) is None
    assert "not a template name" in template_problem(str(tmp_path / "missing.jinja"))
    assert "does not compile" in template_problem("{% for m in messages %}")


def test_validation_names_the_key_and_the_fix(tmp_path):
    with pytest.raises(ConfigError) as error:
        compose_spec(["model=tiny_llama", f"model.chat_template={tmp_path}/missing.jinja"], env=cpu_env())
    assert "model.chat_template" in str(error.value) and ".jinja file" in str(error.value)


def test_the_masking_check_names_the_turn_that_breaks():
    tok = tiny_tokenizer()
    assert masking_break(tok) is None
    tok.chat_template = FORGETFUL
    where = masking_break(tok)
    assert where is not None and where.startswith("turn 3 (assistant)"), where


def preprocess(*overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [shutil.which("preprocess"), "model=tiny_llama", "dataset.max_length=128", "eval=[none]", *overrides],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )


@pytest.mark.slow
def test_a_template_that_cannot_be_masked_is_refused_before_tokenizing(tmp_path):
    path = tmp_path / "forgetful.jinja"
    path.write_text(FORGETFUL)
    out = preprocess(f"model.chat_template={path}")
    assert out.returncode == 2, out.stderr[-2000:]
    assert (
        "turn 3 (assistant)" in out.stderr
        and "model.chat_template=chatml" in out.stderr
        and "Traceback" not in out.stderr
    )
    fixed = preprocess("model.chat_template=chatml")  # the fix the message gives
    assert fixed.returncode == 0, fixed.stderr[-2000:]


# Every method renders its rows with the chat template: the offline data each trains on.
METHOD_DATA = {
    "sft": [],
    "dpo": ["method=dpo", "dataset.path=generated:arithmetic_preferences", "dataset.format=preference"],
    "kto": ["method=kto", "dataset.path=generated:arithmetic_preferences", "dataset.format=preference"],
    "grpo": ["method=grpo", "eval=[none]", "method.num_generations=2"],
}


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(METHOD_DATA))
def test_a_model_without_a_template_needs_one_chosen(method, tmp_path):
    """A base model's tokenizer with no template: the same message with the fix for every method,
    through `train` (the check comes before any row is read), and the fix works."""
    from pathlib import Path

    from hydratune.config.spec import ModelSpec
    from hydratune.models.model_loading import model_location

    from ..training.runs import train

    source = Path(model_location(ModelSpec(name="embedded:smollm2-135m-instruct"), cache_root()))
    base = tmp_path / "base"
    base.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (source / name).is_file():
            shutil.copy(source / name, base / name)
    config = json.loads((base / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (base / "tokenizer_config.json").write_text(json.dumps(config))
    chosen = [*METHOD_DATA[method], f"model.name={base}", "model.random_init=true", "train.max_steps=1"]
    out = train(tmp_path / "refused", *chosen, check=False)
    assert out.returncode == 2, out.stderr[-2000:]
    assert f"model.chat_template=null: the tokenizer of {base} has no chat template" in out.stderr
    assert "set model.chat_template=chatml" in out.stderr and "Traceback" not in out.stderr
    fixed = preprocess(*chosen, "model.chat_template=chatml")
    assert fixed.returncode == 0, fixed.stderr[-2000:]


@pytest.mark.slow
def test_a_jinja_file_trains_and_is_saved_with_adapter_and_merged(tmp_path):
    from ..training.runs import train

    path = tmp_path / "marked.jinja"
    path.write_text(MARKED)
    train(tmp_path / "run", "train.max_steps=1", f"model.chat_template={path}")
    for folder in ("adapter", "merged"):
        from transformers import AutoTokenizer

        saved = AutoTokenizer.from_pretrained(str(tmp_path / "run" / folder))
        assert saved.chat_template == MARKED, folder
        rendered = saved.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
        assert "[marked]" in rendered
