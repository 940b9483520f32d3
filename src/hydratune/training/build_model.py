"""The model a method trains: full weights, a LoRA adapter, or LoRA on a 4-bit NF4 base.

Dtypes, chosen so the optimizer always updates fp32 weights:
- full: fp32 master weights; bf16/fp16 runs autocast the matmuls.
- lora: the frozen base in the compute dtype (bf16 on GPUs), the adapter in fp32.
- qlora: decoder Linear weights in 4 bits, dequantized to the compute dtype per matmul; the
  other frozen weights in fp32, or, under FSDP2 and ZeRO-3, in the compute dtype the 4-bit
  weights are stored in.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from hydratune.config.environment import Environment
from hydratune.config.spec import MethodSpec, RunSpec
from hydratune.models.attention_choice import resolve_attention
from hydratune.models.inference_placement import DTYPES
from hydratune.models.model_loading import load_base_model, load_model_config

log = logging.getLogger(__name__)


def lora_config(method: MethodSpec):
    from peft import LoraConfig

    targets = method.lora.target_modules
    return LoraConfig(
        r=method.lora.rank,
        lora_alpha=method.lora.alpha,
        lora_dropout=method.lora.dropout,
        target_modules="all-linear" if "all-linear" in targets else list(targets),
        use_rslora=method.lora.use_rslora,
        use_dora=method.lora.use_dora,
        task_type="CAUSAL_LM",
    )


def quantization_config(method: MethodSpec, precision: str, storage: torch.dtype = torch.uint8):
    from transformers import BitsAndBytesConfig

    q = method.quant
    compute = DTYPES[precision] if q.compute_dtype == "auto" else getattr(torch, q.compute_dtype)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=q.quant_type,
        bnb_4bit_use_double_quant=q.double_quant,
        bnb_4bit_compute_dtype=compute,
        bnb_4bit_quant_storage=storage,
    )


def shards_weights(spec: RunSpec) -> bool:
    """FSDP2 and ZeRO-3 split every parameter across ranks."""
    sh = spec.sharding
    return sh.strategy == "fsdp" or (sh.strategy == "deepspeed" and sh.deepspeed.stage == 3)


def qlora_device_map(spec: RunSpec, env: Environment, local_rank: int) -> dict | None:
    """Where the 4-bit base loads. One GPU or DDP: this rank's GPU. ZeRO-3 and FSDP2: no map, as their
    QLoRA recipes load: transformers refuses any device_map while a ZeRO-3 config is alive (the
    TrainingArguments made before the model hold one), and for both its bitsandbytes quantizer then
    places the weights on the current device, which the process group set to this rank's GPU;
    accelerate's FSDP2 preparation shards a model with 4-bit weights where it loaded."""
    if not env.cuda or shards_weights(spec):
        return None
    return {"": local_rank}


def freeze_keeping_dtype(model, gradient_checkpointing: bool) -> None:
    """prepare_model_for_kbit_training without its fp32 upcast of every non-4-bit parameter: under
    FSDP2 and ZeRO-3 the norms and embeddings stay in the dtype the 4-bit weights are stored in, so
    every frozen parameter the strategy shards has one dtype (PEFT's FSDP-QLoRA guidance; TRL skips
    that preparation for a sharded 4-bit model for the same reason). Reentrant-free checkpointing
    needs no gradient on the inputs."""
    for param in model.parameters():
        param.requires_grad_(False)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def build_model(spec: RunSpec, env: Environment, cache_root: Path, precision: str):
    """The base model wrapped for the spec's method, ready for the Trainer."""
    method = spec.method.weights
    dtype = torch.float32 if method == "full" else DTYPES[precision]
    kwargs = {}
    if method == "qlora":
        # Sharded, the 4-bit weights are packed into elements of the model's dtype, as FSDP-QLoRA
        # and ZeRO-3 QLoRA do: the strategy then splits them like any other parameter.
        storage = dtype if shards_weights(spec) else torch.uint8
        kwargs["quantization_config"] = quantization_config(spec.method, precision, storage)
        kwargs["device_map"] = qlora_device_map(spec, env, int(os.environ.get("LOCAL_RANK", 0)))
    model = load_base_model(
        spec.model,
        cache_root,
        dtype=dtype,
        attn_implementation=resolve_attention(
            spec.model.attn_implementation, env, load_model_config(spec.model, cache_root)
        ),
        **kwargs,
    )
    # No KV cache in training: with a cache transformers would not read packed sequence
    # boundaries from position_ids, and attention would cross sequences.
    model.config.use_cache = False
    if method == "qlora":
        from peft import prepare_model_for_kbit_training

        keep_4bit_layout(model)
        if shards_weights(spec):
            freeze_keeping_dtype(model, spec.train.gradient_checkpointing)
        else:
            # The checkpointing kwargs go by position: peft 0.22 renamed the keyword (and warns on the old name).
            model = prepare_model_for_kbit_training(model, spec.train.gradient_checkpointing, {"use_reentrant": False})
    elif spec.train.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if method == "lora":
            model.enable_input_require_grads()  # the frozen embeddings must still pass gradients on
    if method in ("lora", "qlora"):
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(spec.method))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("model: %s with %s, %d trainable parameters", spec.model.name, method, trainable)
    return model


def keep_4bit_layout(model) -> None:
    """On CPUs with AVX512-BF16, bitsandbytes repacks a 4-bit weight in place for its inference
    kernel at the first eval-mode forward and marks the weight's quantization state. Under FSDP2 the
    weight it repacks is a gathered copy, and every later gather was read as repacked: the held-out
    loss came out wrong. Training's own kernel measures the held-out loss on every strategy."""
    from bitsandbytes.nn import Linear4bit

    for module in model.modules():
        if isinstance(module, Linear4bit):
            module.support_avx512bf16_for_cpu = False
