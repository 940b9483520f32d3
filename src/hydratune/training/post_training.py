"""DPO, KTO and GRPO: TRL's trainers with hydratune's data, checkpoints and logging.

TRL's trainers are HF Trainer subclasses, so sharding, checkpoints, resume and logging
run as for SFT. What hydratune changes is small: the rows come tokenized from the data
stage (cached, reported), so the trainers' own tokenizing pass is skipped; the method's
keys become TRL's config fields; rewards come from the registry.
"""

from __future__ import annotations

from typing import Any

from hydratune.config.environment import Environment
from hydratune.config.problems import ConfigError, Problem
from hydratune.config.spec import RunSpec
from hydratune.rewards import for_trainer
from hydratune.training.compiled_model import eager_generation
from hydratune.training.fast_sampling import can_fold_adapter, fast_sampling, in_eval_mode
from hydratune.training.group_filter import GroupFilter
from hydratune.training.hydratune_trainer import HydratuneMixin, HydratuneTrainer
from hydratune.training.lean_loss import use_chunked_loss
from hydratune.training.support_matrix import LOSS_TYPES, resolve_generation
from hydratune.url_credentials import lent_credentials, strip_credentials


def _trl_classes(method: str) -> tuple[type, type]:
    """(TRL trainer, TRL config) of a method; imported late, TRL is heavy."""
    if method == "dpo":
        from trl import DPOConfig, DPOTrainer

        return DPOTrainer, DPOConfig
    if method == "kto":
        from trl import KTOConfig, KTOTrainer

        return KTOTrainer, KTOConfig
    from trl import GRPOConfig, GRPOTrainer

    return GRPOTrainer, GRPOConfig


def config_class(spec: RunSpec) -> type:
    """The TrainingArguments class of the spec's method (TRL's config subclasses for dpo, kto, grpo)."""
    if spec.method.name == "sft":
        from transformers import TrainingArguments

        return TrainingArguments
    return _trl_classes(spec.method.name)[1]


def method_arguments(spec: RunSpec, env: Environment) -> dict[str, Any]:
    """The method's keys as TRL config fields (nothing for sft)."""
    m, ds = spec.method, spec.dataset
    if m.name == "sft":
        return {}
    loss = m.loss_type or LOSS_TYPES[m.name][0]
    common = {
        "beta": m.beta,
        "loss_type": loss,
        # checkpointing is build_model's (TRL's configs default it on)
        "gradient_checkpointing": spec.train.gradient_checkpointing,
    }
    if m.name == "dpo":
        losses, weights = [loss], [m.dpo_weight]
        if m.sft_weight:  # RPO: DPO plus an NLL term on the chosen replies (with dpo_weight 0, that term alone)
            losses, weights = [loss, "sft"], [m.dpo_weight, m.sft_weight]
        return {
            **common,
            "loss_type": losses,
            "loss_weights": weights,
            "max_length": ds.max_length,
            "precompute_ref_log_probs": m.precompute_reference,
        }
    if m.name == "kto":
        return {
            **common,
            "max_length": ds.max_length,
            "precompute_ref_log_probs": m.precompute_reference,
            "desirable_weight": m.desirable_weight,
            "undesirable_weight": m.undesirable_weight,
            # the KL estimate pairs neighbours in a batch; the data stage stored the rows shuffled
            "train_sampling_strategy": "sequential",
        }
    return _grpo_arguments(spec, env, common)


def _grpo_arguments(spec: RunSpec, env: Environment, common: dict[str, Any]) -> dict[str, Any]:
    m, ds = spec.method, spec.dataset
    generation = resolve_generation(m.generation, env)
    grpo = {
        **common,
        "num_generations": m.num_generations,
        "temperature": m.temperature,
        "max_completion_length": m.max_completion_length,
        "epsilon": m.epsilon,
        "epsilon_high": m.epsilon_high,
        "importance_sampling_level": m.importance_sampling_level,
        "scale_rewards": m.scale_rewards,
        "mask_truncated_completions": m.mask_truncated_completions,
        "num_iterations": m.num_iterations,
        "steps_per_generation": m.steps_per_generation,
        "reward_weights": list(m.reward_weights) or None,
        "use_vllm": generation != "transformers",
        "log_completions": False,
    }
    if generation == "vllm_colocate":
        # Left unset, vLLM sizes its KV cache for the model's whole context (131,072 tokens for
        # Llama-3.1-8B), which does not fit its share of the GPU; a prompt is at most
        # dataset.max_length tokens (longer ones are dropped by the data stage).
        grpo["vllm_max_model_length"] = ds.max_length + m.max_completion_length
        grpo["vllm_gpu_memory_utilization"] = m.vllm_gpu_memory_utilization
        grpo["vllm_enable_sleep_mode"] = m.vllm_sleep_mode
    if generation != "transformers":
        grpo["vllm_mode"] = generation.removeprefix("vllm_")
        if m.vllm_server_url:
            # the arguments are logged (TensorBoard, W&B) and pickled into every checkpoint: build_trainer
            # lends the credentials to TRL's client alone
            grpo["vllm_server_base_url"] = strip_credentials(m.vllm_server_url)
    return grpo


def build_trainer(spec: RunSpec, **kwargs: Any):
    """The method's trainer, with hydratune's mixin; kwargs are the HF Trainer's."""
    if spec.method.name == "sft":
        return HydratuneTrainer(chunked_loss=use_chunked_loss(spec, kwargs["model"]), **kwargs)
    trl_trainer, _ = _trl_classes(spec.method.name)
    if spec.method.name == "grpo":
        trainer_class = type("HydratuneGRPOTrainer", (GroupFilter, FastSampling, HydratuneMixin, trl_trainer), {})
        kwargs.pop("data_collator", None)  # GRPO samples its own batches
        server_url = spec.method.vllm_server_url if kwargs["args"].vllm_server_base_url else None
        with lent_credentials(kwargs["args"], "vllm_server_base_url", server_url):  # TRL's client connects in here
            trainer = trainer_class(reward_funcs=[for_trainer(name) for name in spec.method.rewards], **kwargs)
        # Under FSDP2 and ZeRO-3 each forward gathers weights with the other ranks, and ranks whose
        # batches repeat prompts differently would run different numbers of forwards.
        trainer.sampling_shortcuts = spec.sharding.strategy in ("single", "ddp")
        if spec.method.group_filter == "spread":
            _check_group_filter(trainer)
            trainer.group_filter_max_rounds = spec.method.group_filter_max_rounds
        return trainer
    kwargs.pop("data_collator", None)  # TRL's preference collators pad prompt and replies
    trainer_class = type(f"Hydratune{trl_trainer.__name__}", (PretokenizedRows, HydratuneMixin, trl_trainer), {})
    return trainer_class(**kwargs)


def _check_group_filter(trainer) -> None:
    """The filter assembles batches of text completions; a vision model's image inputs it cannot."""
    if trainer._is_vlm:
        raise ConfigError(
            [
                Problem(
                    "method.group_filter=spread", "the filter handles text prompts only", "set method.group_filter=none"
                )
            ]
        )


class FastSampling:
    """GRPO's transformers-path sampling through fast_sampling (one prompt pass per group; on
    the CPU the adapter folded in, where the weights allow) in a single process or under DDP.
    vLLM, vision models, FSDP2 and DeepSpeed sample as TRL does. Compiled layers sample eagerly.
    Every path samples in eval mode, without dropout (`in_eval_mode`), folded or not."""

    sampling_shortcuts = False

    def _generate_single_turn(self, prompt_ids, images, *args, **kwargs):
        model = self.accelerator.unwrap_model(self.model_wrapped)
        with eager_generation(model), in_eval_mode(model):
            if not self.sampling_shortcuts or self.use_vllm or self._is_vlm:
                return super()._generate_single_turn(prompt_ids, images, *args, **kwargs)
            with fast_sampling(model, fold_adapter=can_fold_adapter(model)):
                return super()._generate_single_turn(prompt_ids, images, *args, **kwargs)


class PretokenizedRows:
    """Rows that already hold TRL's token-id columns skip TRL's tokenizing pass (the data stage
    did it). KTO's KL completions are still added: each row's completion paired with the
    previous row's within a micro-batch, as TRL's own preparation does."""

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        if "prompt_ids" not in dataset.column_names:
            return super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        if getattr(self, "calculate_KL", False):

            def add_kl_completion_ids(rows):
                rows["KL_completion_ids"] = [rows["completion_ids"][-1]] + rows["completion_ids"][:-1]
                return rows

            dataset = dataset.map(
                add_kl_completion_ids,
                batched=True,
                batch_size=args.per_device_train_batch_size,
                keep_in_memory=True,
                desc=f"KL completions of the {dataset_name} rows",
            )
        return dataset
