"""The DeepSpeed JSON: generated from the spec, or the user's own file, validated.

Batch sizes, learning rate and clipping are left "auto" so the HF Trainer fills them
from the spec: one source of truth.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydratune.config.problems import ConfigError, Problem
from hydratune.config.spec import RunSpec


def deepspeed_config(spec: RunSpec, *, cpu: bool, precision: str, model_config=None) -> dict[str, Any]:
    """The generated JSON; `model_config` (the model's transformers config) sizes ZeRO-3's buckets."""
    ds = spec.sharding.deepspeed
    if ds.config_file:
        return load_user_config(Path(ds.config_file), spec)
    zero: dict[str, Any] = {"stage": ds.stage, "overlap_comm": not cpu, "contiguous_gradients": True}
    if ds.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": not cpu}
    if ds.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": not cpu}
    if ds.stage == 3:
        # merged/ and adapter/ need whole weights: gather them on save
        zero["stage3_gather_16bit_weights_on_model_save"] = True
        # Buckets sized to the model (the HF Trainer fills "auto" from its hidden size), not
        # DeepSpeed's fixed 5e8/5e7 elements.
        zero |= dict.fromkeys(("reduce_bucket_size", "stage3_prefetch_bucket_size"), "auto")
        zero["stage3_param_persistence_threshold"] = "auto"
        if model_config is not None:
            zero |= zero3_gathering(model_config, cpu=cpu)
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "train_batch_size": "auto",
        "gradient_clipping": "auto",
        "zero_optimization": zero,
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
    }
    if cpu or ds.offload_optimizer:
        # DeepSpeed's fused CPU Adam is a C++ extension built at run time; torch's AdamW
        # needs no compiler and is what its CPU accelerator supports.
        config["zero_force_ds_cpu_optimizer"] = False
        config["optimizer"] = {
            "type": "AdamW",
            "params": {"lr": "auto", "betas": "auto", "eps": "auto", "weight_decay": "auto", "torch_adam": True},
        }
    return config


def zero3_gathering(model_config, *, cpu: bool) -> dict[str, int]:
    """How many gathered parameters ZeRO-3 keeps alive, and how far ahead it fetches. DeepSpeed's
    defaults keep up to 1e9 gathered parameters alive, and any it will reuse within 1e9: a model
    under a billion parameters then stays whole on every rank after the first step.

    On the CPU, where gathering is a copy in one machine's memory: released after each use, a rank
    holds a layer or two. On GPUs the gather of the next layer overlaps the current one's compute
    when both fit: live parameters and the prefetch bucket hold decoder layers whole (one running,
    one fetched), and a layer used again within one layer's parameters (the last layer's forward
    then backward; a checkpointed layer's recompute then backward) stays gathered."""
    text = model_config.get_text_config() if hasattr(model_config, "get_text_config") else model_config
    h = getattr(text, "hidden_size", None)
    if not h:  # not a decoder config this knows how to read: DeepSpeed's own figures
        return {}
    if cpu:
        return {"stage3_max_live_parameters": 2 * h**2, "stage3_max_reuse_distance": 0}
    ffn = getattr(text, "intermediate_size", None) or 4 * h
    heads = text.num_attention_heads
    kv = (getattr(text, "num_key_value_heads", None) or heads) * (getattr(text, "head_dim", None) or h // heads)
    layer = 2 * h * h + 2 * h * kv + 3 * h * ffn  # q, o; k, v; the MLP's gate, up and down
    return {
        "stage3_max_live_parameters": min(2, text.num_hidden_layers) * layer,
        "stage3_max_reuse_distance": layer,
        "stage3_prefetch_bucket_size": layer,
        # norms and biases stay whole on every rank: gathering them costs more than they hold
        "stage3_param_persistence_threshold": 10 * h,
    }


REQUIRED_KEYS = ("zero_optimization",)


def load_user_config(path: Path, spec: RunSpec) -> dict[str, Any]:
    key = f"sharding.deepspeed.config_file={path}"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(
            [Problem(key, f"cannot read it as JSON ({exc})", "fix the file, or set config_file=null to generate one")]
        ) from None
    problems = [
        Problem(key, f"has no '{k}' section", "add it (see the DeepSpeed config docs)")
        for k in REQUIRED_KEYS
        if k not in config
    ]
    stage = config.get("zero_optimization", {}).get("stage")
    if stage not in (0, 1, 2, 3):
        problems.append(Problem(key, f"zero_optimization.stage is {stage!r}", "use 1, 2 or 3"))
    if stage == 3 and not config.get("zero_optimization", {}).get("stage3_gather_16bit_weights_on_model_save", False):
        problems.append(
            Problem(
                key,
                "ZeRO-3 without zero_optimization.stage3_gather_16bit_weights_on_model_save saves no full weights, so "
                "export fails",
                'add "stage3_gather_16bit_weights_on_model_save": true to zero_optimization',
            )
        )
    micro = config.get("train_micro_batch_size_per_gpu", "auto")
    if micro not in ("auto", spec.train.micro_batch_size):
        problems.append(
            Problem(
                key,
                f"train_micro_batch_size_per_gpu={micro} disagrees with "
                f"train.micro_batch_size={spec.train.micro_batch_size}",
                'set it to "auto"',
            )
        )
    accum = config.get("gradient_accumulation_steps", "auto")
    if accum not in ("auto", spec.train.gradient_accumulation_steps):
        problems.append(
            Problem(
                key,
                f"gradient_accumulation_steps={accum} disagrees with train.gradient_accumulation_steps",
                'set it to "auto"',
            )
        )
    if problems:
        raise ConfigError(problems)
    return config
