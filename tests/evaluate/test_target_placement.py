"""Evaluation targets load where the placement says (the harness's HFLM runs on the model as loaded)."""

from __future__ import annotations

import pytest
import torch

from hydratune.config.spec import ModelSpec
from hydratune.evaluate import targets
from hydratune.models.inference_placement import CPU_FP32, Placement

ON_GPU = Placement("cuda", torch.bfloat16)


class Loaded(Exception):
    pass


def capture(seen: dict):
    def fake(*args, **kwargs):
        seen.update(kwargs)
        raise Loaded

    return fake


def test_base_target_loads_on_the_placement(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(targets, "load_base_model", capture(seen))
    monkeypatch.setattr(targets, "model_location", lambda model, root: str(tmp_path))
    target = targets.base_target(ModelSpec(name="some/model"), tmp_path, placement=ON_GPU)
    with pytest.raises(Loaded):
        target.load()
    assert seen["dtype"] == torch.bfloat16 and seen["device_map"] == "cuda"
    # bf16 results are cached apart from fp32 ones; the fp32 key is the one it always was
    assert target.cache_identity["dtype"] == "bfloat16"
    assert "dtype" not in targets.base_target(ModelSpec(name="some/model"), tmp_path, placement=CPU_FP32).cache_identity


def test_merged_target_loads_on_the_placement(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    seen = {}
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", capture(seen))
    with pytest.raises(Loaded):
        targets.merged_target(tmp_path, placement=ON_GPU).load()
    assert seen["dtype"] == torch.bfloat16 and seen["device_map"] == "cuda"


def test_adapter_target_loads_on_the_placement(tmp_path, monkeypatch):
    from peft import AutoPeftModelForCausalLM

    seen = {}
    monkeypatch.setattr(AutoPeftModelForCausalLM, "from_pretrained", capture(seen))
    with pytest.raises(Loaded):
        targets.adapter_target(tmp_path, placement=ON_GPU).load()
    assert seen["dtype"] == torch.bfloat16 and seen["device_map"] == "cuda"


def test_hydratune_eval_loads_its_models_on_the_gpu_where_there_is_one(tmp_path, monkeypatch):
    """The standalone command (behind hydratune-eval) resolves its target and base on the machine's placement."""
    import argparse

    from hydratune.commands import evaluate

    from ..conftest import cpu_env

    seen = {}

    def fake_resolve(target, root, *, trust_remote_code, placement):
        seen["target"] = placement
        raise Loaded

    monkeypatch.setattr(evaluate, "resolve_target", fake_resolve)
    monkeypatch.setattr(evaluate, "detect_environment", lambda: cpu_env(cuda=True, cuda_bf16=True, gpu_count=1))
    args = argparse.Namespace(cache_dir=str(tmp_path), target="some/model", trust_remote_code=False)
    with pytest.raises(Loaded):
        evaluate.evaluate_from_arguments(args)
    assert seen["target"] == ON_GPU
    monkeypatch.setattr(evaluate, "detect_environment", lambda: cpu_env())
    with pytest.raises(Loaded):
        evaluate.evaluate_from_arguments(args)
    assert seen["target"] == CPU_FP32
