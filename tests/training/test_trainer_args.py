"""TrainingArguments and the DeepSpeed JSON generated from the spec, and a user's own file validated before training."""

from __future__ import annotations

import json

import pytest

from hydratune.commands.cli import compose_spec
from hydratune.config.problems import ConfigError
from hydratune.training.deepspeed_config import deepspeed_config

from ..conftest import cpu_env


def spec(*overrides):
    return compose_spec(["+experiment=quickstart", *overrides], env=cpu_env())


def test_generated_config_follows_the_spec():
    zero3 = deepspeed_config(spec("sharding=deepspeed_zero3_offload"), cpu=True, precision="fp32")
    z = zero3["zero_optimization"]
    assert z["stage"] == 3 and z["offload_optimizer"]["device"] == "cpu" and z["offload_param"]["device"] == "cpu"
    assert z["stage3_gather_16bit_weights_on_model_save"] is True
    assert zero3["optimizer"]["params"]["torch_adam"] is True  # no C++ extension build on the CPU
    assert zero3["train_micro_batch_size_per_gpu"] == "auto"  # filled by the Trainer from the spec
    # buckets sized to the model, and ZeRO-3 frees gathered weights after each use
    assert z["reduce_bucket_size"] == z["stage3_prefetch_bucket_size"] == "auto"
    assert "stage3_max_live_parameters" not in z  # no model config given: DeepSpeed's own
    zero1 = deepspeed_config(spec("sharding=deepspeed_zero1"), cpu=False, precision="bf16")
    assert zero1["zero_optimization"] == {"stage": 1, "overlap_comm": True, "contiguous_gradients": True}
    assert "optimizer" not in zero1  # on GPUs DeepSpeed uses the Trainer's optimizer


def test_user_file_is_used_and_checked(tmp_path):
    good = tmp_path / "ds.json"
    good.write_text(json.dumps({"zero_optimization": {"stage": 2}, "train_micro_batch_size_per_gpu": "auto"}))
    assert deepspeed_config(
        spec("sharding=deepspeed_zero2", f"sharding.deepspeed.config_file={good}"), cpu=True, precision="fp32"
    ) == json.loads(good.read_text())

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"zero_optimization": {"stage": 5}, "train_micro_batch_size_per_gpu": 32}))
    with pytest.raises(ConfigError) as info:
        deepspeed_config(
            spec("sharding=deepspeed_zero2", f"sharding.deepspeed.config_file={bad}"), cpu=True, precision="fp32"
        )
    text = info.value.render()
    assert "zero_optimization.stage is 5" in text and "disagrees with train.micro_batch_size=4" in text

    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read it as JSON"):
        deepspeed_config(
            spec("sharding=deepspeed_zero2", f"sharding.deepspeed.config_file={broken}"), cpu=True, precision="fp32"
        )


def test_bad_user_file_fails_validation_before_training(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"train_micro_batch_size_per_gpu": "auto"}))
    with pytest.raises(ConfigError) as info:
        spec("sharding=deepspeed_zero2", f"sharding.deepspeed.config_file={bad}")
    assert "has no 'zero_optimization' section" in info.value.render()


def test_collective_timeout_and_checkpoint_pruning_come_from_the_spec():
    from hydratune.training.trainer_args import fsdp_settings, training_arguments

    args = training_arguments(
        spec("sharding.collective_timeout_minutes=2.5", "train.save_total_limit=1"),
        cpu_env(),
        precision="fp32",
        has_eval=True,
        layer_class="LlamaDecoderLayer",
    )
    assert args.ddp_timeout == 150  # seconds, instead of torch's 30 minutes
    assert args.save_total_limit is None  # hydratune prunes, counting complete checkpoints only
    # each rank writes its own part of a checkpoint; fit() gathers the final weights once
    assert fsdp_settings(spec("sharding=fsdp"), "LlamaDecoderLayer")["state_dict_type"] == "SHARDED_STATE_DICT"


def test_grpo_with_vllm_colocated_sizes_its_engine_from_the_spec():
    """vLLM's context is a prompt (at most dataset.max_length) plus a completion, not the model's
    whole context, and its share of the GPU and sleep mode are the spec's: TRL's GRPOConfig holds them."""
    from hydratune.training.trainer_args import training_arguments

    gpu = cpu_env(cuda=True, cuda_bf16=True, gpu_count=1, packages=cpu_env().packages | {"vllm"})
    grpo = [
        "method=grpo",
        "eval=[none]",
        "dataset.max_length=300",
        "method.max_completion_length=200",
        "method.vllm_gpu_memory_utilization=0.45",
        "method.vllm_sleep_mode=true",
    ]
    run = compose_spec(["+experiment=quickstart", *grpo], env=gpu)
    # fp32: TrainingArguments refuses bf16 on a machine without a GPU; the vLLM fields do not depend on it
    args = training_arguments(run, gpu, precision="fp32", has_eval=False, layer_class="LlamaDecoderLayer")
    assert type(args).__name__ == "GRPOConfig" and args.use_vllm and args.vllm_mode == "colocate"
    assert args.vllm_max_model_length == 300 + 200
    assert args.vllm_gpu_memory_utilization == 0.45 and args.vllm_enable_sleep_mode is True


def llama_config(hidden: int, intermediate: int, layers: int, heads: int, kv_heads: int):
    from transformers import LlamaConfig

    return LlamaConfig(
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
    )


def test_zero3_gathers_whole_layers_on_gpus_and_stays_lean_on_the_cpu():
    """An 8B model's decoder layer (Llama-3.1-8B: one MLP matrix alone is 4096 x 14336 parameters)
    fits in what ZeRO-3 keeps gathered, and is prefetched whole; on the CPU the tiny and 135M shapes
    keep the figures the distributed tests were measured with (2 h^2 live, nothing kept for reuse)."""
    zero3 = spec("sharding=deepspeed_zero3")
    z = deepspeed_config(zero3, cpu=False, precision="bf16", model_config=llama_config(4096, 14336, 32, 32, 8))
    z = z["zero_optimization"]
    mlp_matrix = 4096 * 14336
    layer = 2 * 4096**2 + 2 * 4096 * 1024 + 3 * mlp_matrix
    assert z["stage3_max_live_parameters"] >= layer > mlp_matrix
    assert z["stage3_max_reuse_distance"] > 0 and z["stage3_prefetch_bucket_size"] >= layer
    for hidden, intermediate, layers, heads, kv_heads in ((32, 64, 2, 4, 2), (576, 1536, 30, 9, 3)):
        config = llama_config(hidden, intermediate, layers, heads, kv_heads)
        z = deepspeed_config(zero3, cpu=True, precision="fp32", model_config=config)["zero_optimization"]
        assert z["stage3_max_live_parameters"] == 2 * hidden**2 and z["stage3_max_reuse_distance"] == 0
        assert z["stage3_prefetch_bucket_size"] == z["stage3_param_persistence_threshold"] == "auto"


SERVER_SECRET = "p@ss/w0rdZQX"


def grpo_on_a_vllm_server():
    """A GRPO spec sampling on `trl vllm-serve` behind basic auth (checked as on a GPU machine with vLLM)."""
    gpu = cpu_env(cuda=True, cuda_bf16=True, gpu_count=1, packages=cpu_env().packages | {"vllm"})
    return compose_spec(
        [
            "model=tiny_llama",
            "method=grpo",
            "eval=[none]",
            "method.generation=vllm_server",
            f"method.vllm_server_url=https://me:{SERVER_SECRET}@vllm.example:8000",
        ],
        env=gpu,
    )


def test_grpo_arguments_hold_the_vllm_server_without_its_credentials():
    """The trainer's arguments are what TensorBoard (`to_json_string`) and W&B (`to_dict`) log and every
    checkpoint pickles (training_args.bin): none holds any part of the password."""
    import pickle

    from hydratune.training.trainer_args import training_arguments

    args = training_arguments(grpo_on_a_vllm_server(), cpu_env(), precision="fp32", has_eval=False, layer_class="x")
    assert args.use_vllm and args.vllm_mode == "server"
    assert args.vllm_server_base_url == "https://vllm.example:8000"
    for written in (args.to_json_string(), str(args.to_sanitized_dict()), pickle.dumps(args)):
        text = written if isinstance(written, str) else written.decode("latin-1")
        assert "w0rdZQX" not in text and "p@ss" not in text


def test_trls_vllm_client_gets_the_credentials_and_the_arguments_keep_none(monkeypatch, tmp_path):
    """The credentials are lent to TRL's trainer while it connects (its vLLM client reads them from
    `vllm_server_base_url`), and are gone from the arguments once it is built."""
    import trl.trainer.grpo_trainer
    from datasets import Dataset

    from hydratune.training.post_training import build_trainer
    from hydratune.training.trainer_args import training_arguments

    from ..data.tokenizers_for_tests import tiny_tokenizer
    from ..tiny_llama import tiny_llama

    class Connected(Exception):
        pass

    def connect(**kwargs):
        raise Connected(kwargs["server_base_url"])

    monkeypatch.setattr(trl.trainer.grpo_trainer, "VLLMGeneration", connect)
    spec = grpo_on_a_vllm_server()
    args = training_arguments(spec, cpu_env(), precision="fp32", has_eval=False, layer_class="x")
    args.output_dir, args.beta = str(tmp_path), 0.0  # no reference model to build
    tokenizer = tiny_tokenizer()
    with pytest.raises(Connected) as connected:
        build_trainer(
            spec,
            model=tiny_llama(vocab_size=len(tokenizer)),
            args=args,
            train_dataset=Dataset.from_list([{"prompt": "What is 2 + 3 ?"}] * 8),
            processing_class=tokenizer,
            identity={},
            keep_checkpoints=None,
        )
    assert connected.value.args[0] == f"https://me:{SERVER_SECRET}@vllm.example:8000"
    assert args.vllm_server_base_url == "https://vllm.example:8000"
