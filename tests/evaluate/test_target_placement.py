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
