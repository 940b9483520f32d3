"""After a GPU run, export, the sample reply and evaluation all get the GPU in the run's precision."""

from __future__ import annotations

import pytest
import torch

from hydratune.commands.cli import compose_spec
from hydratune.models.inference_placement import Placement
from hydratune.pipeline import run_training
from hydratune.pipeline.sample_generation import sample_reply

from ..conftest import cpu_env

GPU = cpu_env(cuda=True, cuda_bf16=True, gpu_count=1)
ON_GPU = Placement("cuda", torch.bfloat16)


class Stop(Exception):
    pass


def test_sample_reply_loads_on_the_placement(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    seen = {}

    def fake_from_pretrained(path, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", lambda path, **kwargs: None)
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", fake_from_pretrained)
    with pytest.raises(Stop):
        sample_reply(tmp_path, "2+2?", placement=ON_GPU)
    assert seen["dtype"] == torch.bfloat16 and seen["device_map"] == "cuda"


def test_finish_run_places_every_stage_from_the_environment_and_precision(tmp_path, monkeypatch):
    spec = compose_spec(
        ["+experiment=quickstart", "train.sample_prompt=2+2?"], output_dir=str(tmp_path / "run"), env=GPU
    )
    seen = {}

    def record(name, result=None):
        def fake(*args, **kwargs):
            seen[name] = kwargs.get("placement", args[-1] if args else None)
            if isinstance(result, Exception):
                raise result
            return result

        return fake

    trained = {"data": {}, "precision": "bf16", "metrics": {"train_loss": 1.0, "global_step": 1}, "log_history": []}
    monkeypatch.setattr(run_training, "detect_environment", lambda: GPU)
    monkeypatch.setattr(run_training, "read_train_result", lambda spec: trained)
    monkeypatch.setattr(run_training, "export_merged", record("export", {}))
    monkeypatch.setattr(run_training, "sample_reply", record("sample", "4"))
    monkeypatch.setattr(run_training, "plot_curves", lambda *args: None)
    monkeypatch.setattr(run_training, "evaluate_run", record("evaluate", Stop()))
    with pytest.raises(Stop):
        run_training.finish_run(spec, plan=None, started=0.0)
    assert seen == {"export": ON_GPU, "sample": ON_GPU, "evaluate": ON_GPU}


def test_evaluate_run_places_the_tuned_and_the_base_model(tmp_path, monkeypatch):
    spec = compose_spec(["+experiment=quickstart"], output_dir=str(tmp_path / "run"), env=GPU)
    seen = {}
    monkeypatch.setattr(run_training, "base_target", lambda *a, placement: seen.setdefault("base", placement))
    monkeypatch.setattr(run_training, "merged_target", lambda *a, placement, **k: seen.setdefault("tuned", placement))
    monkeypatch.setattr(run_training, "run_evaluation", lambda *a, **k: {})
    run_training.evaluate_run(spec, ON_GPU)
    assert seen == {"base": ON_GPU, "tuned": ON_GPU}
