"""export_merged loads where the placement says: the merge in fp32 on the GPU, full weights in the saved dtype."""

from __future__ import annotations

import pytest
import torch

from hydratune.commands.cli import compose_spec
from hydratune.export import merge_adapter
from hydratune.models.inference_placement import Placement

from ..conftest import cpu_env

ON_GPU = Placement("cuda", torch.bfloat16)


class Loaded(Exception):
    pass


@pytest.fixture
def spec(tmp_path, monkeypatch):
    monkeypatch.setattr(merge_adapter, "load_tokenizer", lambda model, root: None)
    return compose_spec(["+experiment=quickstart"], output_dir=str(tmp_path / "run"), env=cpu_env())


def test_adapter_merges_in_fp32_on_the_placement_device(spec, tmp_path, monkeypatch):
    seen = {}

    def fake_load(model, root, **kwargs):
        seen.update(kwargs)
        raise Loaded

    monkeypatch.setattr(merge_adapter, "load_base_model", fake_load)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    with pytest.raises(Loaded):
        merge_adapter.export_merged(spec, adapter, save_dtype=torch.bfloat16, placement=ON_GPU)
    # fp32 keeps merged vs base+adapter (the parity in run.json) to fp32 rounding; saved in bf16 after
    assert seen["dtype"] == torch.float32 and seen["device_map"] == "cuda"


def test_full_weights_load_in_the_saved_dtype_on_the_placement_device(spec, tmp_path, monkeypatch):
    seen = {}

    def fake_from_pretrained(path, **kwargs):
        seen.update(kwargs)
        raise Loaded

    monkeypatch.setattr(merge_adapter.AutoModelForCausalLM, "from_pretrained", fake_from_pretrained)
    with pytest.raises(Loaded):
        merge_adapter.export_merged(spec, tmp_path, save_dtype=torch.bfloat16, placement=ON_GPU)
    assert seen["dtype"] == torch.bfloat16 and seen["device_map"] == "cuda"


def test_hydratune_export_merges_on_the_gpu_where_there_is_one(spec, tmp_path, monkeypatch):
    """The standalone command (export_run, behind hydratune-export) passes the machine's placement on."""
    from hydratune.config.spec_file import save_spec
    from hydratune.export import run_export

    run_dir = tmp_path / "run"
    save_spec(spec, run_dir)
    (run_dir / "adapter").mkdir()
    seen = {}

    def fake_export(spec, weights, *, save_dtype, placement):
        seen["placement"] = placement
        raise Loaded

    monkeypatch.setattr(run_export, "detect_environment", lambda: cpu_env(cuda=True, cuda_bf16=True, gpu_count=1))
    monkeypatch.setattr(run_export, "export_merged", fake_export)
    with pytest.raises(Loaded):
        run_export.export_run(run_dir, None)
    assert seen["placement"].device == "cuda"
    monkeypatch.setattr(run_export, "detect_environment", lambda: cpu_env())
    with pytest.raises(Loaded):
        run_export.export_run(run_dir, None)
    assert seen["placement"] == Placement("cpu", torch.float32)
