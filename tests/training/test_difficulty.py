"""GRPO's difficulty pre-pass: which prompts it keeps, its cache keyed on the start model, and its refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hydratune.training.difficulty import histogram, kept_prompts, pass_rates

from .runs import record, tiny_model_dir, train


def by_answer(completions, answer, **_) -> list[float]:
    """Passes by the prompt, whatever was sampled: answers that are multiples of 3 always, one above
    never, two above on every other completion (k completions of a prompt come in a row: a rate of 1/2)."""
    return [float(int(a) % 3 == 0 or (int(a) % 3 == 2 and i % 2 == 0)) for i, a in enumerate(answer)]


def never(completions, **_) -> list[float]:
    return [0.0] * len(completions)


def test_kept_prompts_are_those_strictly_between_0_and_1():
    rates = [0.0, 1.0, 0.5, 0.125, 0.875, 0.0, 1.0]
    assert kept_prompts(rates) == [2, 3, 4]
    assert histogram(rates) == {"at_0": 2, "between": 3, "at_1": 2}
    assert kept_prompts([]) == [] and histogram([]) == {"at_0": 0, "between": 0, "at_1": 0}
    assert kept_prompts([0.0, 1.0]) == []


def test_pass_rates_group_each_prompts_k_completions():
    passed = [True, False, True, True, False, False, True, True, True]
    assert pass_rates(passed, 3) == [2 / 3, 1 / 3, 1.0]
    assert pass_rates(passed[:6], 2) == [0.5, 1.0, 0.0]


def prompt_data(path: Path, count: int = 18) -> Path:
    rows = [{"prompt": f"What is {i} plus 3?", "answer": str(i + 3)} for i in range(count)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def grpo(data: Path, *extra: str) -> list[str]:
    return [
        "method=grpo",
        "eval=[none]",
        f"dataset.path={data}",
        "dataset.format=prompt",
        "dataset.eval_split=null",
        "dataset.max_length=128",
        "method.num_generations=4",
        "method.max_completion_length=4",
        "train.micro_batch_size=4",
        "method.difficulty_samples=2",
        "method.rewards=[tests.training.test_difficulty:by_answer]",
        *extra,
    ]


def estimate(overrides: list[str]):
    from hydratune.cache_dirs import cache_root
    from hydratune.commands.cli import compose_spec
    from hydratune.data.prepare_data import run_preprocess
    from hydratune.models.model_loading import load_tokenizer
    from hydratune.training.difficulty import run_difficulty

    from ..conftest import cpu_env

    spec = compose_spec(overrides, env=cpu_env())
    root = cache_root(spec.run.cache_dir)
    prepared = run_preprocess(spec)
    rows = prepared.load("train")
    return rows, run_difficulty(spec, prepared.key, rows, load_tokenizer(spec.model, root), root, "fp32")


def reseeded(model_dir: Path, seed: int) -> None:
    """Other random weights in the same model folder: the same name, another start model."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir)).save_pretrained(model_dir)


def test_prepass_keeps_the_prompts_with_spread_cached_once_and_keyed_on_the_start_model(tmp_path):
    model = tiny_model_dir(tmp_path / "model")
    overrides = grpo(prompt_data(tmp_path / "prompts.jsonl"), f"model.name={model}")
    rows, first = estimate(overrides)
    expected = [i for i, answer in enumerate(rows["answer"]) if int(answer) % 3 == 2]
    assert not first.cache_hit and first.kept == expected and len(first.rates) == len(rows) == 18
    assert first.record()["pass_rates"] == {"at_0": 6, "between": 6, "at_1": 6}
    _, again = estimate(overrides)
    assert again.cache_hit and again.directory == first.directory and again.kept == expected
    reseeded(model, seed=1)
    _, changed = estimate(overrides)
    assert not changed.cache_hit and changed.directory != first.directory
    _, bounded = estimate([*overrides, "method.difficulty_max_prompts=5"])
    assert not bounded.cache_hit and len(bounded.rates) == 5 and bounded.kept == [i for i in expected if i < 5]


def test_prepass_that_keeps_nothing_is_refused_naming_the_fix(tmp_path):
    from hydratune.config.problems import ConfigError

    overrides = grpo(
        prompt_data(tmp_path / "prompts.jsonl", count=8),
        "model=tiny_llama",
        "method.rewards=[tests.training.test_difficulty:never]",
    )
    with pytest.raises(ConfigError) as info:
        estimate(overrides)
    (problem,) = info.value.problems
    assert problem.key == "method.difficulty_samples=2"
    assert "8 prompts estimated, pass rate 0: 8, between: 0, 1: 0; 0 kept" in problem.message
    assert "method.difficulty_samples=0" in problem.fix


@pytest.mark.slow
def test_grpo_trains_on_the_kept_prompts_and_records_the_prepass(tmp_path):
    data = prompt_data(tmp_path / "prompts.jsonl")
    run = tmp_path / "run"
    out = train(run, *grpo(data, "model=tiny_llama", "train.max_steps=2"))
    # one prompt a step: a kept one has completions that pass and fail, a prompt of the other 12 has not
    steps = [e for e in record(run)["log_history"] if "loss" in e]
    assert [(e["frac_reward_zero_std"], e["rewards/by_answer/mean"]) for e in steps] == [(0.0, 0.5)] * 2
    found = record(run)["data"]["difficulty"]
    assert {k: found[k] for k in ("estimated", "pass_rates", "kept")} == {
        "estimated": 18,
        "pass_rates": {"at_0": 6, "between": 6, "at_1": 6},
        "kept": 6,
    }
    assert "difficulty: built" in out.stderr + out.stdout
    unsolved = grpo(data, "model=tiny_llama", "method.rewards=[gsm8k_correct]")  # random weights: never right
    refused = train(tmp_path / "refused", *unsolved, check=False)
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert "the difficulty pre-pass kept no prompt" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "refused" / "adapter").exists()
