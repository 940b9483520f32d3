"""The run's recipe: claim the directory -> plan -> preprocess -> fit (on every rank) -> export
-> evaluate -> record (run.json and the summary).

The directory is claimed (and a resume decided) before anything is written into it. One
process (single, or under an outside launcher) does it all, its main rank finishing the
run. When the strategy needs several local processes and no launcher started this one, it
prepares the data, relaunches fit() under torchrun with the resolved spec, waits, then
finishes the run itself.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import time
from typing import Any

from hydratune.cache_dirs import cache_root
from hydratune.config.environment import detect_environment
from hydratune.config.problems import ConfigError, Problem
from hydratune.config.spec import RunSpec
from hydratune.config.spec_file import save_spec
from hydratune.data.prepare_data import run_preprocess
from hydratune.evaluate.run_evaluation import run_evaluation
from hydratune.evaluate.targets import base_target, merged_target
from hydratune.evaluate.tasks.harness import first_metric
from hydratune.export.merge_adapter import export_merged
from hydratune.held_run_files import write_held
from hydratune.models.inference_placement import CPU_FP32, Placement, inference_placement
from hydratune.models.model_loading import load_tokenizer
from hydratune.pipeline.curves import plot_curves
from hydratune.pipeline.run_directory import RunDirectoryRefused, claim_run_directory, take_run_directory
from hydratune.pipeline.run_record import parent_record, write_run_record
from hydratune.pipeline.run_summary import run_summary
from hydratune.pipeline.sample_generation import sample_reply
from hydratune.run_layout import RunDirectory
from hydratune.training import mlflow_tracking
from hydratune.training.checkpoints import finished_at_budget, resolve_resume
from hydratune.training.difficulty import run_difficulty
from hydratune.training.disk_estimate import check_disk_space, estimate_disk
from hydratune.training.fit import check_prepared_rows, fit, read_train_result
from hydratune.training.launch import needs_relaunch, relaunch
from hydratune.training.plan import plan_run, resolve_precision, write_plan

log = logging.getLogger(__name__)


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def run_training(spec: RunSpec, *, sweep_job: bool = False) -> Any:
    """The run's objective (what a sweep optimizes); None for a dry run and on non-main ranks.
    `sweep_job`: a job of a sweep, which `train.resume=auto` skips when it has finished."""
    start = time.perf_counter()
    # Nodes may share one run directory (a shared filesystem): node 0 owns it. Another
    # node writing first would make node 0 refuse its own run as an earlier one.
    owner = is_main_process() and spec.sharding.node_rank == 0
    claim = claim_run_directory(spec) if owner else None  # refused here, before anything is written
    try:
        return _run_in(spec, claim, start, sweep_job)
    finally:
        if claim is not None:
            claim.release()  # held for the whole run: no other command clears, resumes or joins it meanwhile


def _run_in(spec: RunSpec, claim, start: float, sweep_job: bool) -> Any:
    env = detect_environment()
    plan = plan_run(spec, save=False) if is_main_process() else None
    disk = estimate_disk(spec, plan) if plan is not None else None
    if spec.run.dry_run:
        if claim is not None:
            _dry_run(spec, claim, plan, disk)
        return None
    if claim is not None:
        check_disk_space(spec, disk, spec.output_dir)  # refused (exit 2) before the data or training writes
        if claim.kind == "resume":  # decided on the data too: a changed file is another run
            skip = sweep_job and finished_at_budget(spec)
            _refused_as_the_directory(lambda: resolve_resume(spec, run_preprocess(spec).key, finished_ok=skip))
            if skip:
                log.info("%s finished this run already: the resumed sweep skips it", spec.output_dir)
                return json.loads(RunDirectory(spec.output_dir).record.read_text())["objective"]["value"]
        take_run_directory(claim)
        write_held(spec.output_dir)
        write_plan(spec, plan, spec.output_dir, disk=disk.to_dict())
        save_spec(spec, spec.output_dir)
        mlflow_tracking.start_run(spec)
    try:
        return _train_and_finish(spec, env, plan, start)
    except BaseException:
        if claim is not None:
            mlflow_tracking.fail_run(spec.output_dir)
        raise


def _refused_as_the_directory(decide) -> Any:
    """A resume refused (another run's checkpoints, a finished run) refuses the directory: nothing was written."""
    try:
        return decide()
    except ConfigError as error:
        raise RunDirectoryRefused(error.problems) from None


def _dry_run(spec: RunSpec, claim, plan, disk) -> None:
    """Print what the run would do with its directory; write only into a directory that held nothing."""
    if claim.kind == "resume":
        _refused_as_the_directory(lambda: resolve_resume(spec, None))  # the data is checked when it runs
    if claim.kind == "new" and not claim.found:
        claim.lock.keep()
        write_held(spec.output_dir)
        write_plan(spec, plan, spec.output_dir, disk=disk.to_dict())
        save_spec(spec, spec.output_dir)
        return
    print(f"dry run: the run {claim.describe()}; nothing was written there", flush=True)


def _train_and_finish(spec: RunSpec, env, plan, start: float) -> Any:
    if needs_relaunch(spec, env.under_launcher):
        prepared = run_preprocess(spec)  # once, here: the ranks only read the cache
        check_prepared_rows(spec, prepared.load("train"))  # refused here (exit 2), before any rank starts
        if spec.method.difficulty_samples:  # estimated once, here: the ranks read its cache
            _estimate_difficulty(spec, env, prepared)
        resolve_resume(spec, prepared.key)
        relaunch(spec)  # LaunchError, with one message, when a rank fails
        if spec.sharding.node_rank != 0:
            return None  # node 0 finishes the run
    else:
        fit(spec, env)
        if not is_main_process():
            return None
        _release_training_memory()
    return finish_run(spec, plan, started=start)


def _estimate_difficulty(spec: RunSpec, env, prepared) -> None:
    """GRPO's difficulty pre-pass in this process; refused here (exit 2) when it keeps no prompt."""
    root = cache_root(spec.run.cache_dir)
    tokenizer = load_tokenizer(spec.model, root)
    precision = resolve_precision(spec.train.precision, env)
    run_difficulty(spec, prepared.key, prepared.load("train"), tokenizer, root, precision)
    _release_training_memory()


def finish_run(spec: RunSpec, plan, *, started: float) -> float:
    """Export merged/, evaluate, plot and record: one process, after training."""

    result = read_train_result(spec)
    plan = _plan_sized_by_data(spec, plan, result["data"])
    placement = inference_placement(detect_environment(), result["precision"])
    export_start = time.perf_counter()
    export = _export(spec, result["precision"], placement)
    export_seconds = time.perf_counter() - export_start
    sample = _sample(spec, placement)
    curves = plot_curves(result["log_history"], RunDirectory(spec.output_dir).curves)
    eval_start = time.perf_counter()
    metrics = {**_loss_metrics(result["metrics"]), **evaluate_run(spec, placement)}
    eval_seconds = time.perf_counter() - eval_start
    objective_name, objective = objective_of(spec, metrics)
    record = write_run_record(
        spec,
        plan=plan.to_dict(),
        memory=memory_record(plan, result.get("peak_memory")),
        world_size=result["world_size"],
        precision=result["precision"],
        data=result["data"],
        metrics=metrics,
        objective={
            "name": objective_name,
            "value": objective,
            "direction": spec.eval.direction if spec.eval.tasks else "minimize",
        },
        export=export,
        sample=sample,
        curves=str(curves) if curves else None,
        resumed_from=result["resumed_from"],
        parent=parent_record(spec.model.name),
        compile=result.get("compile"),
        wall_seconds={
            "train": result["train_seconds"],
            "first_step": result.get("first_step_seconds"),
            "export": export_seconds,
            "eval": eval_seconds,
            "total": time.perf_counter() - started,
        },
        log_history=result["log_history"],
    )
    log.info("run recorded in %s", record)
    mlflow_tracking.finish_run(spec.output_dir, metrics, step=int(metrics["global_step"]))
    print(run_summary(json.loads(record.read_text()), spec.output_dir), flush=True)
    if objective is None:
        raise unmeasured_objective(spec, metrics)
    return objective


def _export(spec: RunSpec, precision: str, placement: Placement) -> dict:
    """merged/, saved in the run's precision; the merge's fp32 copies freed before anything else loads."""
    import torch

    save_dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    weights = RunDirectory(spec.output_dir).weights(spec.method.weights)
    export = export_merged(spec, weights, save_dtype=save_dtype, placement=placement)
    _release_training_memory()
    return export


def _sample(spec: RunSpec, placement: Placement) -> str | None:
    """A reply of merged/ to train.sample_prompt, printed; None when no prompt is set."""
    if not spec.train.sample_prompt:
        return None
    merged = RunDirectory(spec.output_dir).merged
    sample = sample_reply(
        merged, spec.train.sample_prompt, trust_remote_code=spec.model.trust_remote_code, placement=placement
    )
    print(f"\nSample from merged/:\n  prompt: {spec.train.sample_prompt}\n  reply:  {sample}\n", flush=True)
    return sample


def _plan_sized_by_data(spec: RunSpec, plan, sizes: dict):
    """The estimate sized by the prepared data, which the printed plan preceded (when the data says)."""
    if sizes.get("longest_row") is None and sizes.get("most_supervised_per_micro_batch") is None:
        return plan
    return plan_run(
        spec,
        quiet=True,
        most_supervised=sizes.get("most_supervised_per_micro_batch"),
        longest_row=sizes.get("longest_row"),
    )


def memory_record(plan, peak: dict | None) -> dict:
    """The plan's estimate beside the measured peak of rank 0, and how far apart they are."""
    record = {
        "estimated_bytes": plan.memory.total,
        "measured_peak_bytes": None,
        "measured_as": None,
        "measured_over_estimate": None,
        "measured_reserved_bytes": None,  # GPUs: the caching allocator's peak, beside the live tensors'
    }
    if peak is not None:
        record.update(
            measured_peak_bytes=peak["bytes"],
            measured_as=peak["as"],
            measured_reserved_bytes=peak.get("reserved_bytes"),
            measured_over_estimate=round(peak["bytes"] / plan.memory.total, 3) if plan.memory.total else None,
        )
        sized = f", the loss's logits at {plan.memory.loss_positions} positions" if plan.memory.chunked_loss else ""
        log.info(
            "memory: estimated %.2f GiB%s, measured peak %.2f GiB (%s)",
            plan.memory.total / 2**30,
            sized,
            peak["bytes"] / 2**30,
            peak["as"],
        )
    return record


def _loss_metrics(trained: dict) -> dict:
    """Training's own numbers, with the held-out loss under the `loss.` task prefix."""
    out = {"train_loss": trained["train_loss"], "global_step": trained["global_step"]}
    for name, value in trained.items():
        if name.startswith("eval_"):
            out[f"loss.{name}"] = value
    return out


def evaluate_run(spec: RunSpec, placement: Placement = CPU_FP32) -> dict[str, float]:
    """The configured generation tasks on merged/, and on the base model for comparison, both loaded
    where `placement` says (the harness's HFLM runs on the model as loaded)."""

    root = cache_root(spec.run.cache_dir)
    base = base_target(spec.model, root, placement=placement) if spec.eval.compare_base else None
    layout = RunDirectory(spec.output_dir)
    tuned = merged_target(layout.merged, trust_remote_code=spec.model.trust_remote_code, placement=placement)
    return run_evaluation(
        tuned, base, spec.eval.tasks, cache_root=root, out_dir=layout.eval, system_prompt=spec.dataset.system_prompt
    )


def objective_of(spec: RunSpec, metrics: dict[str, float]) -> tuple[str, float | None]:
    """What a sweep optimizes: (name, value) of eval.objective, or of the final training loss when
    nothing is evaluated. `lm_eval.<task>` names that task's first metric. The value is None when
    the objective was not measured."""
    if not spec.eval.tasks:
        loss = metrics.get("train_loss")  # None where no step's loss is known: never a 0.0 not measured
        return "train_loss", None if loss is None else float(loss)
    name = spec.eval.objective
    if name not in metrics and name.startswith("lm_eval.") and name.count(".") == 1:
        measured = [m.removeprefix("lm_eval.") for m in metrics if m.startswith("lm_eval.")]
        name = "lm_eval." + (first_metric(spec.eval.tasks["lm_eval"], name.removeprefix("lm_eval."), measured) or "")
    return name, (float(metrics[name]) if name in metrics else None)


def unmeasured_objective(spec: RunSpec, metrics: dict[str, float]) -> ConfigError:
    measured = ", ".join(sorted(m for m in metrics if not m.startswith("base.") and m != "global_step"))
    return ConfigError(
        [
            Problem(
                f"eval.objective={spec.eval.objective}",
                f"names no metric the run measured (run.json and every output are saved; measured: {measured})",
                "set eval.objective= to one of those for the next run or sweep",
            )
        ]
    )


def _release_training_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
