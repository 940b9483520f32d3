"""The evaluation stage's check of a spec: each task can run here and on this method, and the
objective names a metric the tasks measure."""

from __future__ import annotations

import re

from hydratune.config.environment import Environment
from hydratune.config.problems import Problem
from hydratune.config.spec import RunSpec
from hydratune.evaluate.sampled_scores import reported_metrics
from hydratune.evaluate.tasks import TASKS
from hydratune.evaluate.tasks.harness import harness_problems, objective_problems


def eval_problems(spec: RunSpec, env: Environment) -> list[Problem]:
    return [*_task_problems(spec, env), *_objective_problems(spec), *_harness_problems(spec, env)]


def _task_problems(spec: RunSpec, env: Environment) -> list[Problem]:
    out = []
    tasks, ds = spec.eval.tasks, spec.dataset
    if "loss" in tasks and spec.method.name == "grpo":
        out.append(
            Problem(
                "eval.tasks.loss",
                "GRPO has no held-out loss: its rows are prompts without targets",
                "measure answers instead: eval=[gsm8k] (or eval=[none])",
            )
        )
    elif "loss" in tasks and not ds.eval_split and ds.eval_fraction == 0:
        out.append(
            Problem(
                "eval.tasks.loss",
                "needs held-out rows, and the dataset has none",
                "set dataset.eval_split=<split> or dataset.eval_fraction=0.02, or eval=[none]",
            )
        )
    if tasks.get("gsm8k") is not None and tasks["gsm8k"].backend == "vllm" and not (env.cuda and env.has("vllm")):
        out.append(
            Problem("eval.tasks.gsm8k.backend=vllm", "vllm needs a CUDA GPU and the vllm package", "use backend=hf")
        )
    return out


def _objective_problems(spec: RunSpec) -> list[Problem]:
    """The objective's task is evaluated and has the metric (the harness names its metrics: _harness_problems)."""
    tasks, objective = spec.eval.tasks, spec.eval.objective
    task_name, _, metric = objective.partition(".")
    if not tasks or (task_name == "lm_eval" and task_name in tasks):
        return []
    if task_name not in tasks:
        return [
            Problem(
                f"eval.objective={objective}",
                f"task `{task_name}` is not in eval.tasks",
                f"use one of: {', '.join(tasks)}",
            )
        ]
    reported = reported_metrics(TASKS[task_name], tasks[task_name])
    if metric not in reported:
        names = ", ".join(f"{task_name}.{m}" for m in reported)
        fix = f"use one of: {names}"
        if re.search(r"_(pass|maj)_at_\d+$", metric):  # a sampled score, reported once replies are sampled
            fix = f"set eval.tasks.{task_name}.num_samples=<k> to score k sampled replies per problem, or {fix}"
        return [Problem(f"eval.objective={objective}", f"`{task_name}` has no metric `{metric}`", fix)]
    return []


def _harness_problems(spec: RunSpec, env: Environment) -> list[Problem]:
    """eval=lm_eval: the harness installed, every task name known to it, and an objective it reports."""
    options = spec.eval.tasks.get("lm_eval")
    if options is None:
        return []
    if not env.has("lm_eval"):
        return [
            Problem(
                "eval=lm_eval",
                "lm-evaluation-harness is not installed",
                "pip install 'hydratune[lmeval]', or drop lm_eval from eval",
            )
        ]
    problems = harness_problems(options)
    if problems or not spec.eval.objective.startswith("lm_eval."):
        return problems
    return objective_problems(options, spec.eval.objective)
