"""Sampled scoring: the pass@k estimator, majority votes, the paired permutation test, and
the evaluation stage scoring k sampled replies per problem beside the greedy one."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from hydratune.evaluate import statistics
from hydratune.evaluate.statistics import mcnemar_exact, paired_permutation_test, pass_at_k

# (n samples, c correct, k) -> 1 - C(n-c, k) / C(n, k), written out by hand
PASS_AT_K = [
    (5, 0, 1, 0.0),
    (5, 5, 1, 1.0),
    (8, 1, 1, 1 / 8),
    (8, 3, 1, 3 / 8),
    (10, 3, 5, 1 - 21 / 252),
    (20, 2, 10, 1 - 43758 / 184756),
    (100, 1, 50, 0.5),
    (4, 2, 3, 1.0),  # fewer wrong samples than k: one of any k is right
    (8, 1, 8, 1.0),
    (8, 0, 8, 0.0),
]


@pytest.mark.parametrize("n,c,k,expected", PASS_AT_K)
def test_pass_at_k_matches_the_closed_form(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)
    assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k), abs=1e-12)


@pytest.mark.parametrize("n,c,k", [(4, 5, 1), (4, -1, 1), (4, 2, 0), (4, 2, 5)])
def test_pass_at_k_refuses_impossible_counts(n, c, k):
    with pytest.raises(ValueError, match="pass@k needs"):
        pass_at_k(n, c, k)


def _enumerated_p(a, b):
    """The permutation p-value from every sign assignment, written out directly."""
    diffs = [x - y for x, y in zip(a, b) if x != y]
    if not diffs:
        return 1.0
    observed = abs(sum(diffs))
    extreme = sum(
        1
        for signs in itertools.product((1, -1), repeat=len(diffs))
        if abs(sum(s * d for s, d in zip(signs, diffs))) >= observed - 1e-9
    )
    return extreme / 2 ** len(diffs)


def test_paired_permutation_test_equals_direct_enumeration_on_small_cases():
    rng = random.Random(7)
    for _ in range(150):
        n, k = rng.randint(1, 12), rng.choice([1, 2, 4, 8])
        a = [rng.randint(0, k) / k for _ in range(n)]
        b = [
            min(1.0, x + rng.choice([0, 0, 1 / k, -1 / k])) if rng.random() < 0.5 else rng.randint(0, k) / k for x in a
        ]
        b = [max(0.0, y) for y in b]
        result = paired_permutation_test(a, b)
        assert result["exact"] and result["p_value"] == pytest.approx(_enumerated_p(a, b), abs=1e-12), (a, b)
        assert result["better_first"] == sum(x > y for x, y in zip(a, b))
        assert result["mean_difference"] == pytest.approx(sum(a) / n - sum(b) / n)


def test_on_right_or_wrong_outcomes_the_permutation_test_is_mcnemars():
    rng = random.Random(11)
    for _ in range(50):
        a = [rng.random() < 0.4 for _ in range(30)]
        b = [rng.random() < 0.6 for _ in range(30)]
        permutation = paired_permutation_test([float(x) for x in a], [float(y) for y in b])["p_value"]
        assert permutation == pytest.approx(mcnemar_exact(a, b)["p_value"], abs=1e-12)


def test_past_the_exact_limit_the_permutation_test_samples_close_to_the_exact_p(monkeypatch):
    rng = random.Random(3)
    a = [rng.random() for _ in range(14)]
    b = [x - rng.uniform(-0.2, 0.5) for x in a]
    monkeypatch.setattr(statistics, "EXACT_SUMS", 10)
    sampled = paired_permutation_test(a, b)
    assert not sampled["exact"] and sampled == paired_permutation_test(a, b)  # seeded: the same p again
    assert sampled["p_value"] == pytest.approx(_enumerated_p(a, b), abs=0.01)


def test_mean_interval_holds_the_mean_and_narrows_with_more_problems():
    values = [0.0, 0.25, 0.5, 1.0] * 10
    low, high = statistics.mean_interval(values)
    wider = statistics.mean_interval(values[:8])
    assert low < 0.4375 < high and wider[0] < low and wider[1] > high
    assert statistics.mean_interval([1.0] * 20) == (1.0, 1.0)


def test_majority_vote_skips_replies_without_an_answer_and_breaks_ties_by_first_seen():
    from hydratune.evaluate.sampled_scores import score_samples
    from hydratune.evaluate.tasks import TASKS, Question
    from hydratune.rewards.answers import gold_answer

    gsm8k = TASKS["gsm8k"]
    problem = Question("q", gold_answer("#### 7"), {})
    # strict: 7, 7, none, 3, 3, 3 -> 3 wins (wrong); flexible reads the last number of each reply
    replies = ["#### 7", "#### 7", "about 7", "#### 3", "#### 3", "#### 3"]
    scored = score_samples(gsm8k, problem, replies)
    assert len(scored["samples"]) == 6 and scored["samples"][2]["generated"] == "about 7"
    assert scored["strict_pass_at_1"] == pytest.approx(2 / 6)
    assert scored["flexible_pass_at_1"] == pytest.approx(3 / 6)
    assert scored["strict_pass_at_6"] == 1.0 and scored["strict_maj_at_6"] is False
    assert scored["flexible_maj_at_6"] is True  # 7 three times, 3 three times: 7 was seen first
    tie = score_samples(gsm8k, problem, ["#### 3", "#### 7", "#### 7", "#### 3"])
    assert tie["strict_maj_at_4"] is False  # 3 seen first
    assert score_samples(gsm8k, problem, ["no answer", "none"])["strict_maj_at_2"] is False


def _replies_task(tokenizer):
    """GSM8K's task with a scorer a random model's replies can pass: a reply is right when it
    has an even number of words (strict) or more than two words (flexible)."""
    import dataclasses

    from hydratune.evaluate.tasks import TASKS, Question

    def score(reply, problem):
        words = reply.split()
        return {
            "strict_accuracy": len(words) % 2 == 0,
            "flexible_accuracy": len(words) > 2,
            "extracted_strict": len(words) % 2,
            "extracted_flexible": min(len(words), 3),
        }

    problems = [Question(f"hello world {i}", 0, {"question": f"hello world {i}"}) for i in range(5)]
    return dataclasses.replace(TASKS["gsm8k"], load_problems=lambda options, root: problems, score=score)


def test_evaluation_scores_k_sampled_replies_beside_the_greedy_one(tmp_path):
    import torch

    from hydratune.config.spec import Gsm8kTaskSpec
    from hydratune.evaluate.run_evaluation import EvalTarget, _task_results, compare

    from ..data.tokenizers_for_tests import tiny_tokenizer
    from ..tiny_llama import tiny_llama

    tokenizer = tiny_tokenizer()
    model = tiny_llama(vocab_size=len(tokenizer))
    task = _replies_task(tokenizer)
    target = EvalTarget("tuned", load=lambda: (model, tokenizer))

    def results(**options):
        spec = Gsm8kTaskSpec(max_new_tokens=6, batch_size=8, **options)
        return _task_results(task, spec, target, lambda: (model, tokenizer), tmp_path, None)

    state = torch.random.get_rng_state()
    sampled = results(num_samples=4, temperature=2.0, sample_seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's random stream is untouched
    greedy = results()
    assert [p["generated"] for p in sampled["predictions"]] == [p["generated"] for p in greedy["predictions"]]
    names = {f"{parsing}_{m}" for parsing in ("strict", "flexible") for m in ("pass_at_1", "pass_at_4", "maj_at_4")}
    assert set(sampled["metrics"]) == {"strict_accuracy", "flexible_accuracy"} | names
    assert set(greedy["metrics"]) == {"strict_accuracy", "flexible_accuracy"}
    replies = [[s["generated"] for s in p["samples"]] for p in sampled["predictions"]]
    assert all(len(r) == 4 for r in replies) and len({text for r in replies for text in r}) > 5
    # every figure recounted from the stored samples
    for p in sampled["predictions"]:
        right = [len(text.split()) % 2 == 0 for text in (s["generated"] for s in p["samples"])]
        assert p["strict_pass_at_1"] == sum(right) / 4 and p["strict_pass_at_4"] == float(any(right))
    mean = sum(p["strict_pass_at_1"] for p in sampled["predictions"]) / 5
    assert sampled["metrics"]["strict_pass_at_1"]["value"] == pytest.approx(mean)
    assert sampled["metrics"]["strict_pass_at_1"]["kind"] == "mean"
    assert "correct" in sampled["metrics"]["strict_maj_at_4"]  # a vote is right or wrong: Wilson's interval
    # the same seed draws the same replies; another seed others
    again = results(num_samples=4, temperature=2.0, sample_seed=1)
    other = results(num_samples=4, temperature=2.0, sample_seed=2)
    assert [[s["generated"] for s in p["samples"]] for p in again["predictions"]] == replies
    assert [[s["generated"] for s in p["samples"]] for p in other["predictions"]] != replies
    # start against result: McNemar's for greedy answers and votes, a permutation test for shares
    summary = compare({"gsm8k": sampled}, {"gsm8k": other})["gsm8k"]
    assert "mcnemar" in summary["strict_accuracy"] and "mcnemar" in summary["strict_maj_at_4"]
    assert "permutation" in summary["strict_pass_at_1"] and "permutation" in summary["flexible_pass_at_4"]
    assert 0 < summary["strict_pass_at_1"]["permutation"]["p_value"] <= 1


def test_a_sampled_objective_without_samples_is_refused_with_the_fix_that_passes():
    from hydratune.commands.cli import compose_spec
    from hydratune.config.problems import ConfigError

    from ..conftest import cpu_env

    chosen = ["model=tiny_llama", "eval=[gsm8k]", "eval.objective=gsm8k.strict_pass_at_1", "eval.direction=maximize"]
    with pytest.raises(ConfigError) as error:
        compose_spec(chosen, env=cpu_env())
    assert (
        "eval.objective=gsm8k.strict_pass_at_1: `gsm8k` has no metric `strict_pass_at_1` (set "
        "eval.tasks.gsm8k.num_samples=<k> to score k sampled replies per problem, or use one of: "
        "gsm8k.strict_accuracy, gsm8k.flexible_accuracy)"
    ) in str(error.value)
    spec = compose_spec([*chosen, "eval.tasks.gsm8k.num_samples=4"], env=cpu_env())  # the fix
    assert spec.eval.tasks["gsm8k"].num_samples == 4
    with pytest.raises(ConfigError, match="gsm8k.strict_maj_at_4"):  # k from num_samples: pass@8 is not measured
        compose_spec(
            [*chosen[:2], "eval.objective=gsm8k.strict_pass_at_8", "eval.tasks.gsm8k.num_samples=4"], env=cpu_env()
        )


def test_the_summary_names_the_primary_metric_first_with_greedy_beside_it(tmp_path):
    import json

    from hydratune.pipeline.run_summary import metric_lines
    from hydratune.run_layout import RunDirectory

    def share(value, correct=None):
        out = {"value": value, "n": 200, "ci95": [value - 0.05, value + 0.05]}
        return {**out, "correct": correct} if correct is not None else {**out, "kind": "mean"}

    summary = {
        "gsm8k": {
            "strict_accuracy": {
                "tuned": share(0.25, 50),
                "base": share(0.215, 43),
                "mcnemar": {"only_tuned_correct": 23, "only_base_correct": 16, "p_value": 0.34},
            },
            "strict_pass_at_1": {
                "tuned": share(0.3),
                "base": share(0.2),
                "permutation": {"better_on_tuned": 60, "better_on_base": 20, "mean_difference": 0.1, "p_value": 1e-4},
            },
        }
    }
    layout = RunDirectory(tmp_path)
    layout.eval_metrics.parent.mkdir(parents=True)
    layout.eval_metrics.write_text(json.dumps({"summary": summary}))
    record = {"spec": {"eval": {"objective": "gsm8k.strict_pass_at_1"}}, "metrics": {"global_step": 3}}
    lines = metric_lines(record, tmp_path)
    assert lines == [
        "primary metric: gsm8k.strict_pass_at_1 (eval.objective)",
        "gsm8k.strict_pass_at_1: start 20.0% [15.0, 25.0] (mean of 200) -> result 30.0% [25.0, 35.0] (mean of 200)",
        "  +10.0 points, permutation p = 0.0001: 60 problems scored higher by the result, 20 by the start",
        "gsm8k.strict_accuracy: start 21.5% [16.5, 26.5] (43/200) -> result 25.0% [20.0, 30.0] (50/200)",
        "  +3.5 points, McNemar p = 0.34: 23 solved by the result only, 16 by the start only",
    ]
