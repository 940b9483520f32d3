"""`eval=lm_eval`: an lm-evaluation-harness task on local JSON data, scored on merged/ and the base."""

from __future__ import annotations

import json

import pytest

from ..training.runs import record, train

pytestmark = pytest.mark.slow

QUESTIONS = [(3, 4), (12, 7), (25, 25), (9, 8), (40, 2), (6, 6), (15, 30), (8, 1)]


def write_task(folder) -> None:
    """A multiple-choice task the harness reads from a local JSON-lines file."""
    rows = [
        {"question": f"What is {a} + {b}?", "choices": [str(a + b), str(a + b + 10), str(a * b + 1)], "label": 0}
        for a, b in QUESTIONS
    ]
    (folder / "sums.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "sums.yaml").write_text(f"""task: sums
dataset_path: json
dataset_kwargs:
  data_files:
    test: {folder / "sums.jsonl"}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
metric_list:
  - metric: acc
  - metric: brier_score
""")
    (folder / "spelled.yaml").write_text(f"""task: spelled
dataset_path: json
dataset_kwargs:
  data_files:
    test: {folder / "sums.jsonl"}
test_split: test
output_type: generate_until
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{choices[0]}}}}"
metric_list:
  - metric: exact_match
filter_list:
  - name: strict-match
    filter:
      - function: regex
        regex_pattern: "([0-9]+)"
      - function: take_first
""")


def choice_picks(model_dir, rows) -> list[bool]:
    """Each question scored by hand: the choice with the highest log-likelihood after the prompt."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    correct = []
    for row in rows:
        context = f"Question: {row['question']}\nAnswer:"
        context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
        scores = []
        for choice in row["choices"]:
            ids = tokenizer(context + " " + choice, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                logprobs = model(torch.tensor([ids])).logits[0].log_softmax(-1)
            scores.append(sum(logprobs[i - 1, ids[i]].item() for i in range(len(context_ids), len(ids))))
        correct.append(max(range(len(scores)), key=scores.__getitem__) == row["label"])
    return correct


def test_harness_task_scores_tuned_and_base_with_intervals(tmp_path):
    write_task(tmp_path)
    run_dir = tmp_path / "run"
    train(
        run_dir,
        "train.max_steps=2",
        "eval=[lm_eval]",
        "eval.tasks.lm_eval.tasks=[sums]",
        f"eval.tasks.lm_eval.include_path={tmp_path}",
    )
    metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
    rows = [json.loads(line) for line in (tmp_path / "sums.jsonl").read_text().splitlines()]
    picks = choice_picks(run_dir / "merged", rows)
    tuned = metrics["tuned"]["lm_eval"]["metrics"]["sums.acc"]
    assert (tuned["correct"], tuned["n"]) == (sum(picks), len(QUESTIONS))
    assert tuned["ci95"][0] <= tuned["value"] <= tuned["ci95"][1]
    assert metrics["base"]["lm_eval"]["metrics"]["sums.acc"]["n"] == len(QUESTIONS)
    assert "p_value" in metrics["summary"]["lm_eval"]["sums.acc"]["mcnemar"]
    predictions = [json.loads(line) for line in (run_dir / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert [p["sums.acc"] for p in sorted(predictions, key=lambda p: p["doc_id"])] == picks
    # the default objective, lm_eval.<first task>, is that task's first metric
    assert record(run_dir)["objective"] == {
        "name": "lm_eval.sums.acc",
        "value": tuned["value"],
        "direction": "maximize",
    }


def test_an_objective_the_tasks_do_not_report_is_refused_before_training(tmp_path):
    from hydratune.commands.cli import compose_spec
    from hydratune.config.problems import ConfigError

    from ..conftest import cpu_env

    write_task(tmp_path)
    chosen = [
        "model=tiny_llama",
        "eval=[lm_eval]",
        f"eval.tasks.lm_eval.include_path={tmp_path}",
        "eval.tasks.lm_eval.tasks=[spelled,sums]",
    ]
    assert (
        compose_spec(chosen, env=cpu_env()).eval.objective == "lm_eval.spelled"
    )  # its first metric, resolved when scored
    with pytest.raises(ConfigError) as error:  # a generation task has no acc
        compose_spec([*chosen, "eval.objective=lm_eval.spelled.acc"], env=cpu_env())
    assert (
        "eval.objective=lm_eval.spelled.acc: names no metric the chosen harness tasks report (set eval.objective= to "
        "one "
        "of: lm_eval.spelled.exact_match.strict-match, lm_eval.sums.acc, lm_eval.sums.brier_score)"
    ) in str(error.value)
    compose_spec([*chosen, "eval.objective=lm_eval.spelled.exact_match.strict-match"], env=cpu_env())  # the fix


def test_an_objective_that_was_not_measured_exits_2_after_saving_the_run(tmp_path):
    """brier_score is a metric the task reports but not a 0/1 one, so it has no paired table and no value
    hydratune measures: the run is recorded whole, then the command says so and exits 2."""
    write_task(tmp_path)
    run_dir = tmp_path / "run"
    out = train(
        run_dir,
        "train.max_steps=2",
        "eval=[lm_eval]",
        "eval.tasks.lm_eval.tasks=[sums]",
        f"eval.tasks.lm_eval.include_path={tmp_path}",
        "eval.objective=lm_eval.sums.brier_score",
        check=False,
    )
    assert out.returncode == 2, out.stderr[-3000:]
    assert "eval.objective=lm_eval.sums.brier_score: names no metric the run measured" in out.stderr
    assert "lm_eval.sums.acc" in out.stderr and "Traceback" not in out.stderr
    rec = record(run_dir)
    assert rec["objective"]["value"] is None and "lm_eval.sums.acc" in rec["metrics"]
    assert (run_dir / "merged" / "config.json").is_file() and (run_dir / "eval" / "metrics.json").is_file()


def test_unknown_harness_task_is_refused_with_the_fix(tmp_path):
    from hydratune.commands.cli import compose_spec
    from hydratune.config.problems import ConfigError

    from ..conftest import cpu_env

    write_task(tmp_path)
    chosen = ["model=tiny_llama", "eval=[lm_eval]", f"eval.tasks.lm_eval.include_path={tmp_path}"]
    with pytest.raises(ConfigError) as error:  # validation: before any data or weights are loaded
        compose_spec([*chosen, "eval.tasks.lm_eval.tasks=[sums,no_such_task]"], env=cpu_env())
    assert "eval.tasks.lm_eval.tasks=no_such_task: is not a task or group the harness knows" in str(error.value)
    assert "lm-eval ls tasks" in str(error.value)
    compose_spec([*chosen, "eval.tasks.lm_eval.tasks=[sums]"], env=cpu_env())  # the fix: only tasks the harness knows
