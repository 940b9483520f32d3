"""lm-evaluation-harness tasks (`eval=lm_eval`): the standard benchmarks, scored by the harness.

The harness runs on the loaded model (merged/, an adapter, or the base) through its `HFLM`
wrapper, with `log_samples` so that every document's score comes back: hydratune turns
each 0/1 metric (acc, acc_norm, exact_match...) into the same accuracy-with-interval and
paired McNemar table as its own tasks. A metric that is not 0/1 per document (perplexity,
BLEU) is reported by value in metrics.json without an interval.

Custom tasks are harness YAML files in `include_path` (the harness reads local JSON, CSV
or Parquet through `dataset_path: json` and `dataset_kwargs.data_files`).
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from hydratune.config.problems import Problem
from hydratune.config.spec import HarnessTaskSpec
from hydratune.evaluate.tasks import Task


@functools.lru_cache(maxsize=4)
def task_manager(options: HarnessTaskSpec):
    """The harness's task index. Indexing its ~15k built-in task files takes ~20 s: skipped when
    every requested name is defined in `include_path`, and done once per process (validation,
    then the tuned and the base model, use the same one)."""
    from lm_eval.tasks import TaskManager

    if options.include_path:
        local = TaskManager(include_path=options.include_path, include_defaults=False, verbosity="ERROR")
        if all(name in local.all_tasks for name in options.tasks):
            return local
    return TaskManager(include_path=options.include_path, verbosity="ERROR")


def harness_problems(
    options: HarnessTaskSpec,
    tasks_key: str = "eval.tasks.lm_eval.tasks",
    path_key: str = "eval.tasks.lm_eval.include_path",
) -> list[Problem]:
    """What would make the harness fail after training: no task, a missing folder, an unknown name."""
    if not options.tasks:
        example = "arc_easy,hellaswag" if tasks_key.startswith("--") else "[arc_easy,hellaswag]"
        return [Problem(tasks_key, "names no task", f"e.g. {tasks_key}={example}")]
    if options.include_path and not Path(options.include_path).expanduser().is_dir():
        return [
            Problem(
                f"{path_key}={options.include_path}", "no such folder", "give the folder holding your task YAML files"
            )
        ]
    known = set(task_manager(options).all_tasks)
    return [
        Problem(
            f"{tasks_key}={name}",
            "is not a task or group the harness knows",
            f"list them with `lm-eval ls tasks`; a custom task's YAML goes in the folder {path_key} names",
        )
        for name in options.tasks
        if name not in known
    ]


def reported_metrics(options: HarnessTaskSpec) -> Optional[list[str]]:
    """The `<task>.<metric>[.<filter>]` names the chosen tasks report (a group's or tag's tasks each), in
    the order of their harness configs; None when a task is defined in Python (known once it is scored)."""
    index = task_manager(options).task_index
    names: list[str] = []
    for task in _leaf_tasks(options.tasks, index):
        cfg = getattr(index.get(task), "cfg", None)
        if not cfg:  # a task defined in Python
            return None
        metrics = [m["metric"] for m in cfg.get("metric_list") or [] if isinstance(m.get("metric"), str)] or list(
            DEFAULT_METRICS.get(cfg.get("output_type"), ())
        )
        if not metrics:
            return None
        filters = [f["name"] for f in cfg.get("filter_list") or []] or ["none"]
        names += [f"{task}.{metric}" + ("" if flt == "none" else f".{flt}") for metric in metrics for flt in filters]
    return names


# The harness's metrics for a task that lists none (lm_eval.api.registry.DEFAULT_METRIC_REGISTRY).
DEFAULT_METRICS = {
    "loglikelihood": ("perplexity", "acc"),
    "multiple_choice": ("acc", "acc_norm"),
    "generate_until": ("exact_match",),
}


def _leaf_tasks(names, index) -> list[str]:
    """Groups and tags expanded to the tasks they run."""
    from lm_eval.tasks._index import Kind

    out: list[str] = []
    for name in names:
        entry = index.get(name) if isinstance(name, str) else None
        if entry is not None and entry.kind == Kind.GROUP:
            members = entry.cfg.get("task") or []
            out += _leaf_tasks([m if isinstance(m, str) else m.get("task") or m.get("group") for m in members], index)
        elif entry is not None and entry.kind == Kind.TAG:
            out += sorted(n for n, e in index.items() if name in e.tags and e.kind in (Kind.TASK, Kind.PY_TASK))
        else:
            out.append(name)
    return out


def objective_problems(options: HarnessTaskSpec, objective: str) -> list[Problem]:
    """`eval.objective=lm_eval.<task>[.<metric>]`: a metric the chosen tasks report. `lm_eval.<task>`
    alone stands for that task's first metric."""
    reported = reported_metrics(options)
    if reported is None:
        return []  # known once scored: a missing objective is reported then, after everything is saved
    name = objective.removeprefix("lm_eval.")
    if name in reported or name in {r.split(".", 1)[0] for r in reported}:  # a metric, or a task for its first one
        return []
    shown = ", ".join(f"lm_eval.{r}" for r in reported[:6]) + (
        f", ... ({len(reported)} in all)" if len(reported) > 6 else ""
    )
    return [
        Problem(
            f"eval.objective={objective}",
            "names no metric the chosen harness tasks report",
            f"set eval.objective= to one of: {shown}",
        )
    ]


def first_metric(options: HarnessTaskSpec, task: str, measured: Sequence[str]) -> Optional[str]:
    """The first metric of `task` (its harness config's order) among those `measured`."""
    order = reported_metrics(options) or []
    candidates = [m for m in order if m.split(".", 1)[0] == task and m in measured]
    return candidates[0] if candidates else next((m for m in sorted(measured) if m.split(".", 1)[0] == task), None)


def _aggregate(aggregated: dict[str, dict[str, Any]], name: str) -> Optional[float]:
    """The harness's value of `<task>.<metric>[.<filter>]`, which it keys `<metric>,<filter>` under the task."""
    task, _, rest = name.partition(".")
    metric, _, flt = rest.partition(".")
    value = aggregated.get(task, {}).get(f"{metric},{flt or 'none'}")
    return float(value) if isinstance(value, (int, float)) else None


def _is_binary(values: list[Any]) -> bool:
    return all(isinstance(v, (bool, int, float)) and float(v) in (0.0, 1.0) for v in values)


def run(options: HarnessTaskSpec, model_tokenizer, cache_root, system_prompt: Optional[str]) -> dict[str, Any]:
    """Score the target on every harness task: per-document records and 0/1 metrics, as the other tasks give."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    model, tokenizer = model_tokenizer()
    start = time.perf_counter()
    results = lm_eval.simple_evaluate(
        model=HFLM(pretrained=model, tokenizer=tokenizer, batch_size=options.batch_size),
        tasks=list(options.tasks),
        num_fewshot=options.num_fewshot,
        limit=options.limit,
        log_samples=True,
        task_manager=task_manager(options),
        apply_chat_template=options.apply_chat_template,
        system_instruction=system_prompt,
        bootstrap_iters=0,  # intervals come from the per-document scores
    )
    seconds = time.perf_counter() - start
    predictions, other, opaque = [], {}, set()
    for harness_task, samples in sorted(results["samples"].items()):
        for sample in sorted(samples, key=lambda s: (s["filter"], s["doc_id"])):
            suffix = "" if sample["filter"] == "none" else f".{sample['filter']}"
            record = {
                "harness_task": harness_task,
                "doc_id": sample["doc_id"],
                "filter": sample["filter"],
                "target": str(sample["target"]),
                "response": str(sample["filtered_resps"])[:1000],
            }
            for metric in sample["metrics"]:
                name = f"{harness_task}.{metric}{suffix}"
                if isinstance(sample[metric], (bool, int, float)):  # not a metric's raw items (brier_score's arrays)
                    record[name] = sample[metric]
                else:
                    opaque.add(name)
            predictions.append(record)
    names = sorted(
        {k for p in predictions for k in p if k.startswith(tuple(f"{t}." for t in results["samples"]))} | opaque
    )
    binary = [n for n in names if n not in opaque and _is_binary([p[n] for p in predictions if n in p])]
    for name in names:
        if name not in binary:  # the harness's own aggregate (per-document values may be tuples: brier_score)
            other[name] = _aggregate(results["results"], name)
    for p in predictions:
        for name in binary:
            if name in p:
                p[name] = bool(p[name])
    documents = len({(p["harness_task"], p["doc_id"]) for p in predictions})
    return {
        "metric_names": binary,
        "predictions": predictions,
        "seconds": seconds,
        "problems_per_second": documents / seconds if seconds else 0.0,
        "unpaired_metrics": other,
    }


TASK = Task(
    name="lm_eval",
    options=HarnessTaskSpec,
    metrics=(),  # named by the harness: `<harness task>.<metric>[.<filter>]`, known once scored
    higher_is_better=True,
    run=run,
)
