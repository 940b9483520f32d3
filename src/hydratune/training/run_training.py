"""run_training(spec): plan -> preprocess -> fit (on every rank) -> export -> evaluate -> run.json.

One process (single, or under an outside launcher) does it all, its main rank
finishing the run. When the strategy needs several local processes and no launcher
started this one, it prepares the data, relaunches fit() under torchrun with the
resolved spec, waits, then finishes the run itself.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from typing import Any

from ..data.prepare_data import run_preprocess
from ..environment import detect_environment
from ..planning import plan_run
from ..run_record import save_spec, write_run_record
from ..spec import RunSpec
from .launch import adopt_slurm_environment, needs_relaunch, relaunch
from .fit import fit, read_train_result, weights_dir

log = logging.getLogger(__name__)


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def run_training(spec: RunSpec) -> Any:
    start = time.perf_counter()
    adopt_slurm_environment()
    env = detect_environment()
    if is_main_process():
        plan = plan_run(spec)
        save_spec(spec, spec.output_dir)
    if spec.run.dry_run:
        return None
    _check_user_deepspeed_file(spec)
    if needs_relaunch(spec, env.under_launcher):
        run_preprocess(spec)  # once, here: the ranks only read the cache
        code = relaunch(spec)
        if code != 0:
            raise RuntimeError(f"training processes failed with exit code {code}; see the log above")
        if spec.sharding.node_rank != 0:
            return None  # node 0 finishes the run
    else:
        fit(spec, env)
        if not is_main_process():
            return None
        _release_training_memory()
    return finish_run(spec, plan, started=start)


def finish_run(spec: RunSpec, plan, *, started: float) -> dict:
    """Export merged/, evaluate, plot and record: one process, after training."""
    import torch

    from ..curves import plot_curves
    from ..export.merge_adapter import export_merged
    from ..sample_generation import sample_reply

    result = read_train_result(spec)
    save_dtype = torch.bfloat16 if result["precision"] == "bf16" else torch.float32
    export_start = time.perf_counter()
    export = export_merged(spec, weights_dir(spec), save_dtype=save_dtype)
    export_seconds = time.perf_counter() - export_start
    sample = sample_reply(spec.output_dir / "merged", spec.train.sample_prompt) if spec.train.sample_prompt else None
    if sample is not None:
        print(f"\nSample from merged/:\n  prompt: {spec.train.sample_prompt}\n  reply:  {sample}\n", flush=True)
    curves = plot_curves(result["log_history"], spec.output_dir / "curves.png")
    metrics = dict(result["metrics"])
    record = write_run_record(
        spec,
        plan=plan.to_dict(),
        world_size=result["world_size"],
        precision=result["precision"],
        data=result["data"],
        metrics=metrics,
        export=export,
        sample=sample,
        curves=str(curves) if curves else None,
        resumed_from=result["resumed_from"],
        wall_seconds={"train": result["train_seconds"], "export": export_seconds, "total": time.perf_counter() - started},
        log_history=result["log_history"],
    )
    log.info("run recorded in %s", record)
    return metrics


def _check_user_deepspeed_file(spec: RunSpec) -> None:
    if spec.sharding.strategy == "deepspeed" and spec.sharding.deepspeed.config_file:
        from pathlib import Path

        from .deepspeed_config import load_user_config

        load_user_config(Path(spec.sharding.deepspeed.config_file), spec)


def _release_training_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
