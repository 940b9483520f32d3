"""RunSpec -> transformers.TrainingArguments: the one place the spec meets the HF Trainer."""

from __future__ import annotations

from hydratune.config.environment import Environment
from hydratune.config.spec import RunSpec
from hydratune.training.checkpoints import checkpoints_dir
from hydratune.training.deepspeed_config import deepspeed_config
from hydratune.training.post_training import config_class, method_arguments

OPTIMIZERS = {"adamw": "adamw_torch", "adamw_8bit": "adamw_bnb_8bit"}


def fsdp_settings(spec: RunSpec, layer_class: str) -> dict:
    fsdp = spec.sharding.fsdp
    config = {
        "version": 2,
        # shard_grad_op keeps parameters gathered from forward to backward (ZeRO-2-like)
        "reshard_after_forward": fsdp.sharding != "shard_grad_op",
        "cpu_offload": fsdp.cpu_offload,
        # Checkpoints stay sharded (each rank writes its own part through torch.distributed.checkpoint);
        # the final weights are gathered once by fit(). A full state dict per checkpoint would
        # funnel the whole model through rank 0 at every save.
        "state_dict_type": "SHARDED_STATE_DICT",
        "auto_wrap_policy": "TRANSFORMER_BASED_WRAP" if fsdp.auto_wrap else "NO_WRAP",
    }
    if fsdp.auto_wrap:
        config["transformer_layer_cls_to_wrap"] = [layer_class]
    return config


def training_arguments(
    spec: RunSpec, env: Environment, *, precision: str, has_eval: bool, layer_class: str, model_config=None
):
    """The method's TrainingArguments (TRL's config subclass for dpo, kto, grpo); the model's decoder
    layer class and config size FSDP's units and DeepSpeed's buckets."""

    t, o, sh = spec.train, spec.optim, spec.sharding
    loss_task = spec.eval.tasks.get("loss")
    every = loss_task.every_n_steps if (loss_task is not None and has_eval) else None
    kwargs = dict(
        output_dir=str(checkpoints_dir(spec)),
        per_device_train_batch_size=t.micro_batch_size,
        per_device_eval_batch_size=t.micro_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        max_steps=t.max_steps or -1,
        num_train_epochs=t.epochs,
        learning_rate=o.learning_rate,
        lr_scheduler_type=o.scheduler if o.scheduler != "constant" else "constant_with_warmup",
        warmup_steps=o.warmup_ratio,  # a float below 1 is a fraction of the steps
        weight_decay=o.weight_decay,
        adam_beta1=o.beta1,
        adam_beta2=o.beta2,
        adam_epsilon=o.eps,
        max_grad_norm=o.max_grad_norm,
        optim=OPTIMIZERS[o.name],
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not env.cuda,
        seed=t.seed,
        data_seed=t.seed,
        train_sampling_strategy="sequential" if t.data_order == "sequential" else "random",
        logging_steps=t.logging_steps,
        # mlflow is logged by hydratune's own callback (training/mlflow_tracking.py), with the spec and results
        report_to=[tracker for tracker in t.report_to if tracker != "mlflow"] or "none",
        run_name=spec.output_dir.name,
        save_strategy="steps" if t.save_steps else "no",
        save_steps=t.save_steps or 500,
        save_total_limit=None,  # pruned by MarkCompleteCheckpoints: only complete ones count, only after marking
        eval_strategy="steps" if every else "no",
        eval_steps=every,
        remove_unused_columns=False,  # seq_lens feeds the collator; GRPO's rewards read the rows' answer
        dataloader_num_workers=0,
        average_tokens_across_devices=True,  # loss = mean over every supervised token of the step, all ranks
        ddp_find_unused_parameters=False,
        ddp_timeout=int(sh.collective_timeout_minutes * 60),  # a dead peer fails the others in minutes, not torch's 30
        disable_tqdm=False,
    )
    kwargs |= _sharding_arguments(spec, env, precision, layer_class, model_config)
    return config_class(spec)(**{**kwargs, **method_arguments(spec, env)})


def _sharding_arguments(spec: RunSpec, env: Environment, precision: str, layer_class: str, model_config) -> dict:
    """The strategy's TrainingArguments: the collective backend, FSDP2's settings, the DeepSpeed JSON."""
    sh, kwargs = spec.sharding, {}
    if sh.world_size > 1:
        kwargs["ddp_backend"] = sh.backend if sh.backend != "auto" else ("nccl" if env.cuda else "gloo")
    if sh.strategy == "fsdp":
        kwargs["fsdp"] = True
        kwargs["fsdp_config"] = fsdp_settings(spec, layer_class)
        if sh.fsdp.sharding == "hybrid_shard":
            from accelerate.parallelism_config import ParallelismConfig

            replicas = sh.fsdp.replica_count(sh.nnodes)
            kwargs["parallelism_config"] = ParallelismConfig(
                dp_replicate_size=replicas, dp_shard_size=sh.world_size // replicas
            )
    if sh.strategy == "deepspeed":
        kwargs["deepspeed"] = deepspeed_config(spec, cpu=not env.cuda, precision=precision, model_config=model_config)
    return kwargs
