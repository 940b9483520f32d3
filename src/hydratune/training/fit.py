"""fit(spec): one rank's training on the HF Trainer, from the cached shards to saved weights.

Every rank runs this; the Trainer (with accelerate under it) handles DDP, FSDP2 and
DeepSpeed from the TrainingArguments. The data was prepared before: ranks only read.
Outputs, written by the main process once whole: `adapter/` (LoRA, QLoRA) or
`trained/` (full weights), and `train_result.json`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from transformers import set_seed

from hydratune.atomic_dir import write_json_atomic
from hydratune.cache_dirs import cache_root
from hydratune.config.environment import Environment
from hydratune.config.spec import RunSpec
from hydratune.data.errors import DataError
from hydratune.data.longest_row import longest_row
from hydratune.data.prepare_data import PreparedData, run_preprocess
from hydratune.data.supervised_positions import most_supervised_per_micro_batch
from hydratune.models.model_loading import load_model_config, load_tokenizer
from hydratune.rewards import READS_REFERENCE, unreadable_references
from hydratune.run_layout import RunDirectory
from hydratune.training import mlflow_tracking
from hydratune.training.build_model import build_model
from hydratune.training.checkpoints import (
    decide_on_rank_zero,
    resolve_resume,
    run_identity,
)
from hydratune.training.compiled_model import compile_in_place, compile_record
from hydratune.training.difficulty import run_difficulty
from hydratune.training.hydratune_trainer import HydratuneMixin
from hydratune.training.parity_rows import parity_batch, save_parity_rows
from hydratune.training.peak_memory import PeakMemory
from hydratune.training.plan import decoder_layer_class, layer_class_of, resolve_precision
from hydratune.training.post_training import build_trainer
from hydratune.training.run_loss import resumed_step, run_training_loss
from hydratune.training.token_throughput import CountingCollator
from hydratune.training.trainer_args import training_arguments
from hydratune.training.upstream_patches import (
    enable_fsdp_on_cpu,
    gather_fsdp2_for_generation,
    import_deepspeed_only_when_used,
    shard_reference_per_layer,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitData:
    prepared: PreparedData
    train_rows: Any
    eval_rows: Any  # None when the held-out loss is not measured
    difficulty: dict | None = None  # GRPO's difficulty pre-pass, when on: what it estimated and kept


def fit(spec: RunSpec, env: Environment) -> dict:
    """This rank's training, read top to bottom: data, process group, model, trainer, train, save."""
    start = time.perf_counter()
    root = cache_root(spec.run.cache_dir)
    tokenizer = load_tokenizer(spec.model, root)
    precision = resolve_precision(spec.train.precision, env)
    data = setup_data(spec, tokenizer, root, precision)
    args = setup_distributed(spec, env, root, precision, has_eval=data.eval_rows is not None)
    set_seed(spec.train.seed)  # the adapter's initialization must not depend on what ran before
    peak = PeakMemory()
    peak.start()
    model = build_model(spec, env, root, precision)
    compiled = compile_in_place(model, spec.train.compile, layer_class_of(model))
    trainer = setup_trainer(spec, args, model, tokenizer, data)
    resume_from = decide_on_rank_zero(lambda: resolve_resume(spec, data.prepared.key))
    if resume_from:
        log.info("resuming from %s", resume_from)
    metrics = train_and_measure(spec, trainer, data, resume_from)
    if "wandb" in spec.train.report_to and trainer.is_world_process_zero():
        finish_wandb_run()  # the next job of a sweep in this process starts its own
    target = RunDirectory(spec.output_dir).weights(spec.method.weights)
    save_trained(trainer, tokenizer, target)
    if trainer.is_world_process_zero():
        result = {
            "metrics": metrics,
            "log_history": trainer.state.log_history,
            "train_seconds": time.perf_counter() - start,
            "tokens_seen": trainer.throughput.last[1],
            "resumed_from": resume_from,
            "world_size": args.world_size,
            "precision": precision,
            "data": {
                "key": data.prepared.key,
                "directory": str(data.prepared.directory),
                "most_supervised_per_micro_batch": most_supervised(spec, data.train_rows, data.eval_rows),
                "longest_row": longest_row(data.train_rows, data.eval_rows),
                "difficulty": data.difficulty,
            },
            "peak_memory": peak.measured(),
            "first_step_seconds": trainer.first_step.seconds,
            "compile": compile_record(spec.train.compile, compiled),
        }
        write_json_atomic(RunDirectory(spec.output_dir).train_result, result)
    trainer.accelerator.wait_for_everyone()
    return metrics


def setup_data(spec: RunSpec, tokenizer, root: Path, precision: str) -> FitData:
    """The prepared rows (a cache hit: the launcher or the first rank built them), checked, GRPO's kept
    by the difficulty pre-pass when it is on, and the held-out rows the loss task measures (at most its max_rows)."""
    prepared = run_preprocess(spec, tokenizer=tokenizer)
    train_rows, eval_rows = prepared.load("train"), prepared.load("eval")
    check_prepared_rows(spec, train_rows)
    difficulty = None
    if spec.method.difficulty_samples:
        # Before the process group and the training model: the ranks do not wait in a collective
        # meanwhile, and the sampling model is freed before training's loads.
        found = run_difficulty(spec, prepared.key, train_rows, tokenizer, root, precision)
        train_rows, difficulty = train_rows.select(found.kept), found.record()
    loss_task = spec.eval.tasks.get("loss")
    if spec.method.name == "grpo" or loss_task is None:
        eval_rows = None  # GRPO's held-out measure is generation (eval=[gsm8k]), after training
    elif loss_task.max_rows and eval_rows is not None:
        eval_rows = eval_rows.select(range(min(loss_task.max_rows, len(eval_rows))))
    return FitData(prepared, train_rows, eval_rows, difficulty)


def setup_distributed(spec: RunSpec, env: Environment, root: Path, precision: str, *, has_eval: bool):
    """The TrainingArguments, with the process group up and the patches this strategy needs.
    They come before the model: under DeepSpeed ZeRO-3 the weights are partitioned as they load."""
    config = load_model_config(spec.model, root)
    layer_class = decoder_layer_class(config, trust_remote_code=spec.model.trust_remote_code)
    args = training_arguments(
        spec,
        env,
        precision=precision,
        has_eval=has_eval,
        layer_class=layer_class,
        model_config=config,
    )
    args.device  # initializes the process group across all ranks
    if spec.sharding.strategy == "deepspeed":
        import deepspeed

        # deepspeed.comm wraps the same group
        deepspeed.init_distributed(dist_backend=args.ddp_backend, timeout=timedelta(seconds=args.ddp_timeout))
    import_deepspeed_only_when_used()
    if spec.sharding.strategy == "fsdp":
        if not env.cuda:
            enable_fsdp_on_cpu()
        if spec.method.name != "sft":
            shard_reference_per_layer()
        if spec.method.name == "grpo":
            gather_fsdp2_for_generation(reshard_after_forward=spec.sharding.fsdp.sharding != "shard_grad_op")
    return args


def setup_trainer(spec: RunSpec, args, model, tokenizer, data: FitData):
    """The method's trainer with its trackers; rank 0 keeps the data records export and the card read."""
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(RunDirectory(spec.output_dir).tensorboard)
    if "wandb" in spec.train.report_to and args.process_index == 0:
        start_wandb_run(spec)
    trainer = build_trainer(
        spec,
        model=model,
        args=args,
        train_dataset=data.train_rows,
        eval_dataset=data.eval_rows,
        data_collator=CountingCollator.for_model(model, tokenizer.pad_token_id),
        processing_class=tokenizer,
        identity=run_identity(spec, data.prepared.key),
        keep_checkpoints=spec.train.save_total_limit,
    )
    if mlflow_tracking.enabled(spec) and trainer.is_world_process_zero():
        trainer.add_callback(mlflow_tracking.step_logger(spec.output_dir))
    if trainer.is_world_process_zero():
        keep_data_records(spec, data.prepared, tokenizer)
    return trainer


def train_and_measure(spec: RunSpec, trainer, data: FitData, resume_from: str | None) -> dict[str, float | None]:
    """Train, with the held-out metrics before (preference methods) and after. `train_loss` is the
    whole run's mean (`run_training_loss`), None where no step's loss is known."""
    metrics: dict[str, float] = {}
    evaluating = data.eval_rows is not None
    # Where the held-out preference metrics start (policy = reference: margins 0), measured by the
    # Trainer at step 0 of training: before it, FSDP2 cannot prepare the model without its optimizer.
    trainer.args.eval_on_start = evaluating and spec.method.is_preference and not resume_from
    # Read before training: save_total_limit may delete the checkpoint resumed from as newer ones are saved.
    resumed_at = resumed_step(resume_from)
    output = trainer.train(resume_from_checkpoint=resume_from)
    if trainer.args.eval_on_start:
        start = next(e for e in trainer.state.log_history if e.get("step") == 0 and "eval_loss" in e)
        metrics.update({f"{k}_start": v for k, v in held_out_metrics(start).items()})
    steps = output.global_step - resumed_at
    loss = run_training_loss(trainer.state.log_history, resumed_at, output.training_loss, steps)
    metrics.update({"train_loss": loss, "global_step": output.global_step})
    if evaluating:
        metrics.update(held_out_metrics(trainer.evaluate()))
        if spec.method.name == "sft":
            metrics["eval_perplexity"] = math.exp(min(metrics["eval_loss"], 50.0))
    return metrics


def keep_data_records(spec: RunSpec, prepared, tokenizer) -> None:
    """The data report (for the model card), and the rows merged/ is checked on (adapters only), in the
    run directory: an export or a publish later needs neither the data nor its cache."""
    layout = RunDirectory(spec.output_dir)
    shutil.copyfile(prepared.directory / "report.json", layout.data_report)
    if spec.method.weights != "full":
        save_parity_rows(layout.parity_rows, parity_batch(prepared.load("eval") or prepared.load("train"), tokenizer))


def start_wandb_run(spec: RunSpec) -> None:
    """This run's own W&B run (offline with WANDB_MODE=offline), in the run directory unless WANDB_DIR is set.
    transformers' callback logs into a run that exists; left to start its own, the jobs of a sweep in one
    process shared the first job's directory (W&B reads WANDB_DIR once per process) and its run."""
    import wandb

    wandb.init(  # W&B writes into <dir>/wandb: RunDirectory.wandb unless WANDB_DIR is set
        project=os.environ.get("WANDB_PROJECT", "hydratune"),
        name=spec.output_dir.name,
        dir=os.environ.get("WANDB_DIR") or str(spec.output_dir),
    )


def finish_wandb_run() -> None:
    """transformers' W&B callback leaves its run open, and would log the next Trainer into it."""
    import wandb

    if wandb.run is not None:
        wandb.finish()


def check_prepared_rows(spec: RunSpec, train_rows) -> None:
    """GRPO: every prompt's reference answer is one its rewards can read (else every completion of that
    prompt scores 0, silently); DataError naming the first row that is not, before any training."""
    if spec.method.name != "grpo":
        return

    bad = unreadable_references(spec.method.rewards, train_rows["answer"])
    if bad:
        readers = ", ".join(name for name in spec.method.rewards if name in READS_REFERENCE)
        first = min((train_rows[i] for i in bad), key=lambda row: _in_file_order(row["source_row"]))
        raise DataError(
            f"{first['source_row']}: the reference answer {first['answer'][-60:]!r} holds no number that "
            f"{readers} can read ({len(bad)} of {len(train_rows)} prompts)",
            "give each prompt a reference that is a number (`72`) or ends in `#### 72`, or choose "
            "method.rewards that do not read it",
        )


def _in_file_order(location: str) -> tuple[str, int]:
    """`file:line` sorts by file, then line (the stored rows are shuffled)."""
    where, _, line = location.rpartition(":")
    return (where, int(line)) if line.isdigit() else (location, 0)


def most_supervised(spec: RunSpec, train_rows, eval_rows) -> int | None:
    """What sizes the plan's chunked-loss term once the data exists (SFT rows only)."""
    if spec.method.name != "sft":
        return None

    return most_supervised_per_micro_batch(spec.train.micro_batch_size, train_rows, eval_rows)


# TRL's held-out preference metrics, under the names run.json gives them.
PREFERENCE_METRICS = {"eval_rewards/accuracies": "eval_reward_accuracy", "eval_rewards/margins": "eval_reward_margin"}


def held_out_metrics(evaluated: dict[str, float]) -> dict[str, float]:
    """The held-out loss, and for dpo (kto) the reference-relative reward accuracy and margin."""
    out = {"eval_loss": evaluated["eval_loss"]}
    out.update({ours: evaluated[theirs] for theirs, ours in PREFERENCE_METRICS.items() if theirs in evaluated})
    return out


def save_trained(trainer: HydratuneMixin, tokenizer, target: Path) -> None:
    """The weights and the tokenizer in `target`; a save that fails (a full disk) leaves no half-written
    `target` that export would read."""
    try:
        save_weights(trainer, target)
        if trainer.is_world_process_zero():
            tokenizer.save_pretrained(str(target))
    except BaseException:
        if trainer.is_world_process_zero():
            shutil.rmtree(target, ignore_errors=True)
        raise


def save_weights(trainer: HydratuneMixin, target: Path) -> None:
    """The trained weights (the adapter, or the whole model) as one plain directory.

    FSDP2 parameters are gathered into a full state dict on every rank (a collective)
    and written by the main process; ZeRO-3 shards are gathered by the Trainer's own save.
    """
    if not trainer.is_fsdp_enabled:
        trainer.save_model(str(target))
        return
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
    )

    state = get_model_state_dict(trainer.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if trainer.is_world_process_zero():
        model = trainer.accelerator.unwrap_model(trainer.model)
        model.save_pretrained(str(target), state_dict=state, safe_serialization=True)


def read_train_result(spec: RunSpec) -> dict:
    return json.loads(RunDirectory(spec.output_dir).train_result.read_text())
