"""run_training(spec): plan -> preprocess -> fit (on every rank) -> export -> evaluate -> run.json.

One process (single, or under an outside launcher) does it all, its main rank
finishing the run. When the strategy needs several local processes and no launcher
started this one, it prepares the data, relaunches fit() under torchrun with the
resolved spec, waits, then finishes the run itself.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import time
from typing import Any

from hydratune.data.prepare_data import run_preprocess
from hydratune.config.environment import detect_environment
from hydratune.plan import plan_run
from hydratune.outputs.run_record import save_spec, write_run_record
from hydratune.config.spec import RunSpec
from hydratune.outputs import mlflow_tracking
from hydratune.outputs.parent_run import parent_record
from hydratune.outputs.run_directory import claim_run_directory
from hydratune.training.checkpoints import resolve_resume
from hydratune.training.launch import needs_relaunch, relaunch
from hydratune.training.fit import fit, read_train_result, weights_dir

log = logging.getLogger(__name__)


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def run_training(spec: RunSpec) -> Any:
    """The run's objective (what a sweep optimizes); None for a dry run and on non-main ranks."""
    start = time.perf_counter()
    env = detect_environment()
    # Nodes may share one run directory (a shared filesystem): node 0 owns it. Another
    # node writing first would make node 0 refuse its own run as an earlier one.
    owner = is_main_process() and spec.sharding.node_rank == 0
    plan = None
    if is_main_process():
        if owner:
            claim_run_directory(spec)
        plan = plan_run(spec, save=owner)
        if owner:
            save_spec(spec, spec.output_dir)
    if spec.run.dry_run:
        return None
    if owner:
        mlflow_tracking.start_run(spec)
    try:
        return _train_and_finish(spec, env, plan, start)
    except BaseException:
        if owner:
            mlflow_tracking.fail_run(spec.output_dir)
        raise


def _train_and_finish(spec: RunSpec, env, plan, start: float) -> Any:
    if needs_relaunch(spec, env.under_launcher):
        prepared = run_preprocess(spec)  # once, here: the ranks only read the cache
        resolve_resume(spec, prepared.key)  # a refused resume fails here, before any rank starts
        relaunch(spec)  # LaunchError, with one message, when a rank fails
        if spec.sharding.node_rank != 0:
            return None  # node 0 finishes the run
    else:
        fit(spec, env)
        if not is_main_process():
            return None
        _release_training_memory()
    return finish_run(spec, plan, started=start)


def finish_run(spec: RunSpec, plan, *, started: float) -> float:
    """Export merged/, evaluate, plot and record: one process, after training."""
    import torch

    from hydratune.outputs.curves import plot_curves
    from hydratune.export.merge_adapter import export_merged
    from hydratune.outputs.run_summary import run_summary
    from hydratune.outputs.sample_generation import sample_reply

    result = read_train_result(spec)
    if plan.memory.chunked_loss and result["data"].get("most_supervised_per_micro_batch") is not None:
        # the loss's term sized by the prepared data, which the printed plan preceded
        plan = plan_run(spec, quiet=True, most_supervised=result["data"]["most_supervised_per_micro_batch"])
    save_dtype = torch.bfloat16 if result["precision"] == "bf16" else torch.float32
    export_start = time.perf_counter()
    export = export_merged(spec, weights_dir(spec), save_dtype=save_dtype)
    export_seconds = time.perf_counter() - export_start
    sample = sample_reply(spec.output_dir / "merged", spec.train.sample_prompt) if spec.train.sample_prompt else None
    if sample is not None:
        print(f"\nSample from merged/:\n  prompt: {spec.train.sample_prompt}\n  reply:  {sample}\n", flush=True)
    curves = plot_curves(result["log_history"], spec.output_dir / "curves.png")
    eval_start = time.perf_counter()
    metrics = {**_loss_metrics(result["metrics"]), **evaluate_run(spec)}
    eval_seconds = time.perf_counter() - eval_start
    objective = objective_value(spec, metrics)
    record = write_run_record(
        spec,
        plan=plan.to_dict(),
        memory=memory_record(plan, result.get("peak_memory")),
        world_size=result["world_size"],
        precision=result["precision"],
        data=result["data"],
        metrics=metrics,
        objective={"name": spec.eval.objective if spec.eval.tasks else "train_loss", "value": objective,
                   "direction": spec.eval.direction if spec.eval.tasks else "minimize"},
        export=export,
        sample=sample,
        curves=str(curves) if curves else None,
        resumed_from=result["resumed_from"],
        parent=parent_record(spec.model.name),
        wall_seconds={"train": result["train_seconds"], "export": export_seconds, "eval": eval_seconds,
                      "total": time.perf_counter() - started},
        log_history=result["log_history"],
    )
    log.info("run recorded in %s", record)
    mlflow_tracking.finish_run(spec.output_dir, metrics, step=int(metrics["global_step"]))
    print(run_summary(json.loads(record.read_text()), spec.output_dir), flush=True)
    return objective


def memory_record(plan, peak: dict | None) -> dict:
    """The plan's estimate beside the measured peak of rank 0, and how far apart they are."""
    record = {"estimated_bytes": plan.memory.total, "measured_peak_bytes": None, "measured_as": None, "measured_over_estimate": None}
    if peak is not None:
        record.update(measured_peak_bytes=peak["bytes"], measured_as=peak["as"],
                      measured_over_estimate=round(peak["bytes"] / plan.memory.total, 3) if plan.memory.total else None)
        sized = f", the loss's logits at {plan.memory.loss_positions} positions" if plan.memory.chunked_loss else ""
        log.info("memory: estimated %.2f GiB%s, measured peak %.2f GiB (%s)", plan.memory.total / 2**30, sized, peak["bytes"] / 2**30, peak["as"])
    return record


def _loss_metrics(trained: dict) -> dict:
    """Training's own numbers, with the held-out loss under the `loss.` task prefix."""
    out = {"train_loss": trained["train_loss"], "global_step": trained["global_step"]}
    for name, value in trained.items():
        if name.startswith("eval_"):
            out[f"loss.{name}"] = value
    return out


def evaluate_run(spec: RunSpec) -> dict[str, float]:
    """The configured generation tasks on merged/, and on the base model for comparison."""
    from hydratune.cache_dirs import cache_root
    from hydratune.evaluate.run_evaluation import run_evaluation
    from hydratune.evaluate.targets import base_target, merged_target

    root = cache_root(spec.run.cache_dir)
    base = base_target(spec.model, root) if spec.eval.compare_base else None
    return run_evaluation(merged_target(spec.output_dir / "merged"), base, spec.eval.tasks, cache_root=root,
                          out_dir=spec.output_dir / "eval", system_prompt=spec.dataset.system_prompt)


def objective_value(spec: RunSpec, metrics: dict[str, float]) -> float:
    """What a sweep optimizes: eval.objective, or the final training loss when nothing is evaluated."""
    if not spec.eval.tasks:
        return float(metrics["train_loss"])
    if spec.eval.objective not in metrics:
        raise KeyError(f"eval.objective={spec.eval.objective} was not measured (measured: {', '.join(sorted(metrics))})")
    return float(metrics[spec.eval.objective])


def _release_training_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
