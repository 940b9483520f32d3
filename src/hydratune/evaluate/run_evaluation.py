"""Run generation tasks on a model, compare it with its base, and write what was found.

Outputs in the chosen directory: metrics.json (accuracies with 95% Wilson intervals,
problems/s, the paired McNemar test against the base), predictions.jsonl (question,
gold, generated text, extracted answers, correct) and predictions_base.jsonl. The
base model's results are cached by (model, task options, prompt settings), so a
sweep evaluates the base once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from hydratune.atomic_dir import build_once, write_json_atomic
from hydratune.config.problems import ConfigError, Problem
from hydratune.eval_table import render_table
from hydratune.evaluate.generate import Sampling, generate_hf, generate_vllm
from hydratune.evaluate.sampled_scores import reported_metrics, score_samples
from hydratune.evaluate.statistics import mcnemar_exact, mean_interval, paired_permutation_test, wilson_interval
from hydratune.evaluate.tasks import TASKS, Task

log = logging.getLogger(__name__)

# Bump when prompts, generation or scoring change what a cached base result would hold.
EVAL_VERSION = 1


@dataclass(frozen=True)
class EvalTarget:
    """A model to evaluate: how to load it (model, tokenizer), and for vLLM its directory."""

    label: str
    load: Callable[[], tuple[Any, Any]]
    directory: Optional[Path] = None
    cache_identity: Optional[dict] = None  # set for base models: their results are cached
    trust_remote_code: bool = False  # the model's own code from its directory (model.trust_remote_code)


def generative_tasks(tasks: dict[str, Any]) -> dict[str, tuple[Task, Any]]:
    return {name: (TASKS[name], options) for name, options in tasks.items() if TASKS[name].generative}


def _task_results(
    task: Task, options, target: EvalTarget, model_tokenizer, cache_root: Path, system_prompt: Optional[str]
) -> dict:
    if task.run is not None:
        scored = task.run(options, model_tokenizer, cache_root, system_prompt)
        metric_names = scored.pop("metric_names")
        return {"metrics": accuracy_metrics(scored["predictions"], metric_names), **scored}

    problems = task.load_problems(options, cache_root)
    shots = task.load_shots(options, cache_root) if task.load_shots else []
    num_samples = getattr(options, "num_samples", 0)
    sampling = Sampling(num_samples, options.temperature, options.sample_seed) if num_samples else None
    conversations = [task.build_prompt(p, shots, system_prompt) for p in problems]
    if getattr(options, "backend", "hf") == "vllm":
        if target.directory is None:
            raise ConfigError(
                [
                    Problem(
                        f"eval.tasks.{task.name}.backend=vllm",
                        f"vLLM cannot load the {target.label} target (an adapter without merged weights)",
                        "evaluate the run directory or its merged/, or use backend=hf",
                    )
                ]
            )
        generations = generate_vllm(
            target.directory,
            conversations,
            max_new_tokens=options.max_new_tokens,
            trust_remote_code=target.trust_remote_code,
            sampling=sampling,
        )
    else:
        model, tokenizer = model_tokenizer()
        generations = generate_hf(
            model,
            tokenizer,
            conversations,
            max_new_tokens=options.max_new_tokens,
            batch_size=options.batch_size,
            label=f"{task.name} on {target.label}",
            sampling=sampling,
        )
    predictions = []
    for i, (problem, reply) in enumerate(zip(problems, generations.texts)):
        scored = task.score(reply, problem)
        sampled = score_samples(task, problem, generations.samples[i]) if generations.samples else {}
        predictions.append({**problem.record, "generated": reply, **scored, **sampled})
    return {
        "metrics": accuracy_metrics(predictions, reported_metrics(task, options)),
        "problems_per_second": generations.per_second,
        "seconds": generations.seconds,
        "predictions": predictions,
    }


def accuracy_metrics(predictions: list[dict], names) -> dict[str, dict]:
    """Each metric over the predictions that carry it. A 0/1 metric: the share correct with its 95%
    Wilson interval. A per-problem share (sampled pass@1, pass@k): the mean with its 95% interval."""
    metrics = {}
    for metric in names:
        outcomes = [p[metric] for p in predictions if metric in p]
        n = len(outcomes)
        if all(isinstance(o, bool) for o in outcomes):
            correct = sum(1 for o in outcomes if o)
            low, high = wilson_interval(correct, n)
            metrics[metric] = {"value": correct / n if n else 0.0, "correct": correct, "n": n, "ci95": [low, high]}
        else:
            low, high = mean_interval(outcomes)
            metrics[metric] = {"value": sum(outcomes) / n, "n": n, "ci95": [low, high], "kind": "mean"}
    return metrics


def evaluate_target(
    target: EvalTarget, tasks: dict[str, tuple[Task, Any]], cache_root: Path, system_prompt: Optional[str]
) -> dict[str, dict]:
    """Results per task. Models load once, lazily (a fully cached base never loads)."""
    loaded: list = []

    def model_tokenizer():
        if not loaded:
            loaded.append(target.load())
        return loaded[0]

    results = {}
    for name, (task, options) in tasks.items():
        # Harness tasks from an include_path read files the cache key cannot see: scored anew each time.
        if target.cache_identity is None or getattr(options, "include_path", None):
            results[name] = _task_results(task, options, target, model_tokenizer, cache_root, system_prompt)
            continue
        identity = {
            "model": target.cache_identity,
            "task": name,
            "options": dataclasses.asdict(options),
            "system_prompt": system_prompt,
            "version": EVAL_VERSION,
        }
        key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:24]

        def build(out: Path, task=task, options=options) -> dict:
            write_json_atomic(
                out / "results.json", _task_results(task, options, target, model_tokenizer, cache_root, system_prompt)
            )
            return {"identity": identity}

        folder, built = build_once(cache_root / "evals" / key, build)
        log.info("%s on %s: %s", name, target.label, "evaluated" if built else "cache hit")
        results[name] = json.loads((folder / "results.json").read_text())
    return results


def compare(tuned: dict[str, dict], base: Optional[dict[str, dict]]) -> dict[str, dict]:
    """Per task and metric: tuned and base values with intervals, and a paired test: McNemar's for
    0/1 outcomes, a permutation test for per-problem shares of sampled replies."""
    summary: dict[str, dict] = {}
    for name, result in tuned.items():
        summary[name] = {}
        for metric, value in result["metrics"].items():
            entry = {"tuned": value}
            if base is not None and name in base and metric in base[name]["metrics"]:
                entry["base"] = base[name]["metrics"][metric]
                tuned_outcomes = [p[metric] for p in result["predictions"] if metric in p]
                base_outcomes = [p[metric] for p in base[name]["predictions"] if metric in p]
                entry.update(paired_test(tuned_outcomes, base_outcomes, value.get("kind") == "mean"))
            summary[name][metric] = entry
    return summary


def paired_test(tuned: list, base: list, shares: bool) -> dict[str, dict]:
    if shares:
        paired = paired_permutation_test(tuned, base)
        return {
            "permutation": {
                "better_on_tuned": paired["better_first"],
                "better_on_base": paired["better_second"],
                "mean_difference": paired["mean_difference"],
                "p_value": paired["p_value"],
                "exact": paired["exact"],
            }
        }
    paired = mcnemar_exact(tuned, base)
    return {
        "mcnemar": {
            "only_tuned_correct": paired["only_first_correct"],
            "only_base_correct": paired["only_second_correct"],
            "p_value": paired["p_value"],
        }
    }


def write_results(out_dir: Path, tuned: dict[str, dict], base: Optional[dict[str, dict]], summary: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for label, results in (("", tuned), ("_base", base or {})):
        if not results:
            continue
        with open(out_dir / f"predictions{label}.jsonl", "w") as fh:
            for name, result in results.items():
                for p in result["predictions"]:
                    fh.write(json.dumps({"task": name, **p}) + "\n")
    metrics = {
        "summary": summary,
        "tuned": {n: {k: v for k, v in r.items() if k != "predictions"} for n, r in tuned.items()},
        "base": {n: {k: v for k, v in r.items() if k != "predictions"} for n, r in (base or {}).items()} or None,
    }
    write_json_atomic(out_dir / "metrics.json", metrics)


def flat_metrics(results: dict[str, dict]) -> dict[str, float]:
    """{'gsm8k.strict_accuracy': 0.41, ...}: the names `eval.objective` refers to."""
    return {f"{name}.{metric}": v["value"] for name, r in results.items() for metric, v in r["metrics"].items()}


def run_evaluation(
    tuned: EvalTarget,
    base: Optional[EvalTarget],
    tasks: dict[str, Any],
    *,
    cache_root: Path,
    out_dir: Path,
    system_prompt: Optional[str] = None,
) -> dict[str, float]:
    """Evaluate `tuned` (and `base` for comparison) on the generative tasks; write and print the results."""
    chosen = generative_tasks(tasks)
    if not chosen:
        return {}
    tuned_results = evaluate_target(tuned, chosen, cache_root, system_prompt)
    base_results = evaluate_target(base, chosen, cache_root, system_prompt) if base is not None else None
    summary = compare(tuned_results, base_results)
    write_results(out_dir, tuned_results, base_results, summary)
    print("\n" + render_table(summary, tuned_results, base_results) + "\n", flush=True)
    out = flat_metrics(tuned_results)
    if base_results:
        out.update({f"base.{k}": v for k, v in flat_metrics(base_results).items()})
    return out
