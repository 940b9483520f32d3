"""The plan's parameter counts are exact and its memory estimate follows the sharding."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from hydratune.commands.cli import compose_spec
from hydratune.training.plan import estimate_memory, make_plan, model_shape

from ..conftest import REPO, cpu_env


def _shape_and_spec(*overrides):
    from transformers import LlamaConfig

    spec = compose_spec(["+experiment=quickstart", *overrides], env=cpu_env())
    config = LlamaConfig(
        vocab_size=1000,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    return spec, config


def test_lora_parameter_count_matches_peft():
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    spec, config = _shape_and_spec("method.lora.rank=4")
    shape = model_shape(spec, config)
    base = AutoModelForCausalLM.from_config(config)
    assert shape.total_params == sum(p.numel() for p in base.parameters())
    model = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear"))
    assert shape.lora_params == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_sharding_divides_memory():
    spec1, config = _shape_and_spec("method=full")
    shape = model_shape(spec1, config)
    single = estimate_memory(spec1, shape, "fp32")
    spec3, _ = _shape_and_spec("method=full", "sharding=deepspeed_zero3")
    zero3 = estimate_memory(spec3, shape, "fp32")
    # DeepSpeed's own fp32 copy of the trained weights sits beside Adam's two states, sharded with them
    assert zero3.weights == single.weights / 2 and zero3.optimizer == single.optimizer * 3 / 2 / 2
    ddp, _ = _shape_and_spec("method=full", "sharding=ddp")
    assert estimate_memory(ddp, shape, "fp32").optimizer == single.optimizer
    spec_off, _ = _shape_and_spec("method=full", "sharding=deepspeed_zero3_offload")
    offload = estimate_memory(spec_off, shape, "fp32")
    assert offload.optimizer == 0 and offload.host_offload > 0


def test_plan_global_batch():
    spec, config = _shape_and_spec("sharding=ddp", "train.gradient_accumulation_steps=3")
    plan = make_plan(spec, cpu_env(), config)
    assert plan.global_batch_rows == 4 * 3 * 2
    assert plan.global_batch_tokens == plan.global_batch_rows * 256


EXPERIMENTS = sorted(p.stem for p in (REPO / "configs" / "experiment").glob("*.yaml"))


def test_dry_run_prints_plan_for_every_experiment(tmp_path):
    """Every shipped experiment plans through the console script: one multirun over all of them
    (one process, where a process per experiment spent most of its time importing)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hydratune.commands.train",
            "-m",
            f"+experiment={','.join(EXPERIMENTS)}",
            "run.dry_run=true",
            f"hydra.sweep.dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    assert result.returncode == 0, result.stderr[-5000:]
    # Hydra announces each job, "[HYDRA] \t#<n> : +experiment=<name> run.dry_run=true", before its plan
    outputs = re.split(r"\[HYDRA\]\s+#\d+ : \+experiment=", result.stdout)[1:]
    planned = {out.split()[0]: out for out in outputs}
    assert sorted(planned) == EXPERIMENTS, result.stdout[-3000:]
    # what post-training adds is planned too: the reference model, and GRPO's sampling
    expected = {
        "arithmetic_dpo": ["reference: the base with the adapter off"],
        "ultrafeedback_dpo": ["reference log-probs precomputed once"],
        "arithmetic_grpo": ["8 completions per prompt, no KL term (no reference)", "generation "],
        "gsm8k_grpo": ["8 completions per prompt", "generation "],
    }
    for experiment, out in planned.items():
        assert "memory per device" in out and "trainable" in out, (experiment, out)
        assert all(text in out for text in expected.get(experiment, [])), (experiment, out)
    assert len(list(tmp_path.glob("*/plan.json"))) == len(EXPERIMENTS)


def test_full_weights_count_a_reference_copy_unless_precomputed():
    pairs = ["method=dpo", "dataset.path=generated:arithmetic_preferences", "dataset.format=preference"]
    lora, config = _shape_and_spec(*pairs)
    full, _ = _shape_and_spec(*pairs, "method.weights=full")
    precomputed, _ = _shape_and_spec(*pairs, "method.weights=full", "method.precompute_reference=true")
    shape = model_shape(full, config)
    assert estimate_memory(lora, shape, "fp32").reference == 0
    assert estimate_memory(full, shape, "fp32").reference == 4 * shape.total_params
    assert estimate_memory(precomputed, shape, "fp32").reference == 0
    sft, _ = _shape_and_spec()
    # a DPO row is a chosen and a rejected sequence
    assert estimate_memory(lora, shape, "fp32").activations > 1.9 * estimate_memory(sft, shape, "fp32").activations


def test_unreachable_hub_model_is_a_clear_error(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hydratune.commands.train",
            "model.name=no-such-org/no-such-model",
            "run.dry_run=true",
            f"hydra.run.dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "model.name=no-such-org/no-such-model: cannot read the model's config" in result.stderr


def test_chunked_loss_term_is_sized_by_the_data():
    """Before preprocessing the loss's term counts a whole chunk; the prepared data's most
    supervised positions per micro-batch size it where they are fewer, never above a chunk."""
    from hydratune.training.plan import CHUNKED_LOGIT_COPIES, PLAIN_LOGIT_COPIES
    from hydratune.training.support_matrix import CHUNK_TOKENS

    spec, config = _shape_and_spec("train.micro_batch_size=4", "dataset.max_length=256")
    shape = model_shape(spec, config)
    unknown = estimate_memory(spec, shape, "fp32")
    assert unknown.chunked_loss and unknown.loss_positions == CHUNK_TOKENS
    assert unknown.logits == CHUNKED_LOGIT_COPIES * CHUNK_TOKENS * shape.vocab_size * 4
    few = estimate_memory(spec, shape, "fp32", most_supervised=100)
    assert few.loss_positions == 100 and few.logits == unknown.logits * 100 / CHUNK_TOKENS
    assert estimate_memory(spec, shape, "fp32", most_supervised=10_000).logits == unknown.logits
    plain, _ = _shape_and_spec("train.micro_batch_size=4", "dataset.max_length=256", "train.loss_kernel=plain")
    every_position = estimate_memory(plain, shape, "fp32", most_supervised=100)
    assert (
        every_position.logits == PLAIN_LOGIT_COPIES * 4 * 256 * shape.vocab_size * 4
        and every_position.loss_positions is None
    )


def test_most_supervised_positions_per_micro_batch():
    """Counted on the Arrow buffers as the loss counts them (a row's first label predicts
    nothing), for whole shards, contiguous and scattered selections."""
    import datasets

    from hydratune.data.supervised_positions import most_supervised_per_micro_batch, supervised_per_row

    labels = [[-100, -100, 5, 6], [7, 8, 9], [-100] * 5, [-100, 1], [4, 4, 4, 4, 4, 4]]
    rows = datasets.Dataset.from_dict({"labels": labels})
    by_hand = [sum(label != -100 for label in row[1:]) for row in labels]
    assert supervised_per_row(rows).tolist() == by_hand == [2, 2, 0, 1, 5]
    assert supervised_per_row(rows.select(range(1, 4))).tolist() == by_hand[1:4]
    assert supervised_per_row(rows.select([4, 0])).tolist() == [5, 2]
    assert most_supervised_per_micro_batch(2, rows) == 7
    assert most_supervised_per_micro_batch(2, rows.select(range(2)), None) == 4
    assert most_supervised_per_micro_batch(9, rows) == 10


def test_longest_row_of_each_kind_sizes_the_plan():
    """Rows are padded to the longest in their micro-batch: the prepared data's longest row (a
    prompt with the longer of its replies, a prompt and its completion, a prompt for GRPO) bounds
    the tokens the plan sizes activations for, never above dataset.max_length."""
    import datasets

    from hydratune.data.longest_row import longest_row

    pairs = datasets.Dataset.from_dict(
        {"prompt_ids": [[1] * 5, [1] * 9], "chosen_ids": [[2] * 7, [2] * 1], "rejected_ids": [[3] * 2, [3] * 4]}
    )
    assert longest_row(pairs) == 13 and longest_row(pairs.select([0]), None) == 12
    unpaired = datasets.Dataset.from_dict({"prompt_ids": [[1] * 3, [1] * 2], "completion_ids": [[2] * 1, [2] * 6]})
    assert longest_row(unpaired) == 8
    prompts = datasets.Dataset.from_dict({"prompt_tokens": [17, 40, 3]})
    assert longest_row(prompts.select([2, 0])) == 17
    assert longest_row(datasets.Dataset.from_dict({"input_ids": [[1] * 6, [1] * 11]})) == 11
    assert longest_row(None, pairs.select([])) is None

    dpo, config = _shape_and_spec(
        "method=dpo",
        "dataset.path=generated:arithmetic_preferences",
        "dataset.format=preference",
        "dataset.max_length=256",
        "train.micro_batch_size=4",
    )
    shape = model_shape(dpo, config)
    unknown, sized = estimate_memory(dpo, shape, "fp32"), estimate_memory(dpo, shape, "fp32", longest_row=64)
    assert sized.activations == unknown.activations / 4  # chosen and rejected: 2 x 64 tokens instead of 2 x 256
    assert estimate_memory(dpo, shape, "fp32", longest_row=1000) == unknown
    grpo, _ = _shape_and_spec("method=grpo", "eval=[none]", "dataset.max_length=256", "method.max_completion_length=64")
    plan = make_plan(grpo, cpu_env(), config, longest_row=64)
    assert plan.global_batch_tokens == plan.global_batch_rows * (64 + 64)  # the prompt and its completion


def test_attention_scores_are_counted_only_where_stock_sdpa_runs():
    sft, config = _shape_and_spec()
    shape = model_shape(sft, config)
    dpo, _ = _shape_and_spec("method=dpo", "dataset.path=generated:arithmetic_preferences", "dataset.format=preference")
    # sdpa_packed attends sft's packed rows one sequence at a time (nothing beyond q, k, v and the
    # output); post-training's padded batches go to stock SDPA under it, as everything does under sdpa
    assert estimate_memory(sft, shape, "fp32", attention="sdpa_packed").attention == 0
    assert estimate_memory(sft, shape, "fp32", attention="sdpa").attention > 0
    assert estimate_memory(dpo, shape, "fp32", attention="sdpa_packed").attention > 0
    assert estimate_memory(sft, shape, "fp32", attention="sdpa", cuda=True).attention == 0


def test_grpo_with_vllm_colocated_counts_its_share_of_the_gpu():
    """Colocated, vLLM takes method.vllm_gpu_memory_utilization of the GPU beside training and holds
    the KV cache transformers' generate would; in sleep mode its share is free while the model trains."""
    import dataclasses

    gpu = dict(cuda=True, cuda_bf16=True, gpu_count=1, gpu_memory_bytes=80 * 2**30)
    with_vllm = cpu_env(**gpu, packages=cpu_env().packages | {"vllm"})
    grpo = ("method=grpo", "eval=[none]")
    spec, config = _shape_and_spec(*grpo)
    spec = dataclasses.replace(spec, method=dataclasses.replace(spec.method, vllm_gpu_memory_utilization=0.4))
    alone = make_plan(spec, cpu_env(**gpu), config).memory  # no vllm installed: transformers samples
    colocated = make_plan(spec, with_vllm, config).memory
    assert alone.generation > 0 and alone.vllm == 0
    assert colocated.vllm == 0.4 * 80 * 2**30 and colocated.generation == 0
    assert colocated.total == pytest.approx(alone.total - alone.generation + 0.4 * 80 * 2**30, rel=1e-12)
    sleeping = dataclasses.replace(spec, method=dataclasses.replace(spec.method, vllm_sleep_mode=True))
    slept = make_plan(sleeping, with_vllm, config).memory
    kept = slept.weights + slept.optimizer + slept.reference
    assert slept.total == pytest.approx(max(colocated.total - colocated.vllm, kept + 0.4 * 80 * 2**30), rel=1e-12)


def test_bf16_qlora_on_a_gpu_counts_what_stays_fp32():
    """PEFT's prepare_model_for_kbit_training casts every parameter outside the 4-bit layers (the
    embeddings, an untied head, the norms) to fp32, and with fp32 embeddings and norms autocast keeps
    the residual stream fp32: the plan of a bf16 run counts both at 4 bytes, the rest at 2."""
    from transformers import LlamaConfig

    gpu = cpu_env(cuda=True, cuda_bf16=True, gpu_count=1)
    spec = compose_spec(["+experiment=quickstart", "method=qlora", "train.gradient_checkpointing=true"], env=gpu)
    h, ffn, layers, heads, kv_heads, vocab = 64, 128, 2, 4, 2, 1000
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=h,
        intermediate_size=ffn,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        tie_word_embeddings=False,
    )
    plan = make_plan(spec, gpu, config)
    assert plan.precision == "bf16"
    kv = kv_heads * h // heads
    linears = [(h, h), (h, kv), (h, kv), (h, h), (h, ffn), (h, ffn), (ffn, h)]  # q k v o gate up down
    four_bit = layers * sum(i * o for i, o in linears)
    fp32 = 2 * vocab * h + (2 * layers + 1) * h  # embeddings, head, norms
    lora = layers * sum(spec.method.lora.rank * (i + o) for i, o in linears)
    assert plan.memory.weights == pytest.approx(four_bit * (0.5 + 0.127 / 8) + 4 * fp32 + 4 * lora, rel=1e-12)
    tokens = spec.train.micro_batch_size * spec.dataset.max_length
    # checkpointed: each layer's input (the residual stream) at fp32, and one layer's saved tensors,
    # the norms' inputs at fp32 and the rest (q, k, v, attention output, the MLP's) at bf16
    one_layer = tokens * (2 * h * 4 + (5 * h + 2 * kv + 4 * ffn) * 2)
    assert plan.memory.activations == layers * tokens * h * 4 + one_layer


def test_qlora_counts_fp32_outside_4bit_only_where_the_model_is_built_so():
    """build_model upcasts QLoRA's non-4-bit weights (prepare_model_for_kbit_training) in one process
    and under DDP; under FSDP2 and ZeRO-3 it keeps them in the storage dtype, and ZeRO-1/2 cast them back."""
    from hydratune.training.build_model import shards_weights
    from hydratune.training.plan import _upcasts_outside_4bit

    gpu = cpu_env(cuda=True, cuda_bf16=True, gpu_count=2)
    for sharding in ("single", "ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"):
        spec = compose_spec(["+experiment=quickstart", "method=qlora", f"sharding={sharding}"], env=gpu)
        upcast = not shards_weights(spec) and spec.sharding.strategy != "deepspeed"
        assert _upcasts_outside_4bit(spec) == upcast, sharding
