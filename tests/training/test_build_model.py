"""How build_model loads a 4-bit base on a GPU machine, decided here with the environment reporting CUDA."""

from __future__ import annotations

import pytest
import torch

from hydratune.commands.cli import compose_spec
from hydratune.training import build_model as build_model_module
from hydratune.training.build_model import build_model

from ..conftest import cpu_env
from ..tiny_llama import tiny_llama

GPU = cpu_env(cuda=True, cuda_bf16=True, gpu_count=2)


class Loaded(Exception):
    """Stops build_model once the loader has been called: only its arguments are looked at."""


def qlora_spec(model_dir, sharding: str):
    return compose_spec(
        [
            "+experiment=quickstart",
            "method=qlora",
            f"sharding={sharding}",
            f"model.name={model_dir}",
            "model.random_init=false",
            "model.attn_implementation=sdpa",
        ],
        env=GPU,
    )


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny")
    tiny_llama().save_pretrained(path)
    return path


def load_kwargs(monkeypatch, spec) -> dict:
    seen = {}

    def fake_load(model, cache_root, **kwargs):
        seen.update(kwargs)
        raise Loaded

    monkeypatch.setattr(build_model_module, "load_base_model", fake_load)
    with pytest.raises(Loaded):
        build_model(spec, GPU, cache_root=None, precision="bf16")
    return seen


@pytest.mark.parametrize(
    "sharding,device_map",
    [
        ("single", {"": 1}),
        ("ddp", {"": 1}),
        ("deepspeed_zero2", {"": 1}),
        ("deepspeed_zero3", None),
        ("fsdp", None),
    ],
)
def test_qlora_device_map_per_strategy(monkeypatch, model_dir, sharding, device_map):
    """Each rank's 4-bit base on its own GPU where the strategy does not shard weights; none under
    ZeRO-3 and FSDP2, whose QLoRA recipes load without one (their weights stored in the compute dtype)."""
    monkeypatch.setenv("LOCAL_RANK", "1")
    spec = qlora_spec(model_dir, sharding)
    kwargs = load_kwargs(monkeypatch, spec)
    assert kwargs.get("device_map") == device_map
    sharded = sharding in ("deepspeed_zero3", "fsdp")
    assert kwargs["dtype"] == torch.bfloat16
    assert kwargs["quantization_config"].bnb_4bit_quant_storage == (torch.bfloat16 if sharded else torch.uint8)


def test_zero3_qlora_passes_transformers_device_map_check(monkeypatch, model_dir):
    """transformers refuses any device_map while a ZeRO-3 config is alive, as it is when build_model
    runs (the TrainingArguments come first): what build_model passes must get through that check."""
    from transformers.integrations import HfDeepSpeedConfig, is_deepspeed_zero3_enabled
    from transformers.integrations.accelerate import check_and_set_device_map

    spec = qlora_spec(model_dir, "deepspeed_zero3")
    kwargs = load_kwargs(monkeypatch, spec)
    alive = HfDeepSpeedConfig({"zero_optimization": {"stage": 3}, "train_micro_batch_size_per_gpu": 1})
    try:
        assert is_deepspeed_zero3_enabled()
        check_and_set_device_map(kwargs.get("device_map"))  # raised "not compatible" before
    finally:
        del alive


@pytest.mark.parametrize("sharding", ["fsdp", "deepspeed_zero3"])
def test_sharded_qlora_keeps_one_dtype_for_frozen_weights(model_dir, sharding):
    """Sharded QLoRA in bf16: the 4-bit weights are stored as bf16, and the norms and embeddings stay
    bf16 too (PEFT's kbit preparation would upcast them to fp32); only the adapter is fp32."""
    import bitsandbytes as bnb

    spec = qlora_spec(model_dir, sharding)
    model = build_model(spec, GPU, cache_root=None, precision="bf16")
    frozen = {n: p.dtype for n, p in model.named_parameters() if not p.requires_grad}
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    assert set(frozen.values()) == {torch.bfloat16}, {n: d for n, d in frozen.items() if d != torch.bfloat16}
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
