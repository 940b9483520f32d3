"""Every method on one process: the loss falls, adapter/ and merged/ load, parity holds."""

from __future__ import annotations

import json

import pytest

from .runs import (
    assert_loss_falls,
    assert_merged_is_the_trained_model,
    assert_merged_loads_and_generates,
    record,
    train,
)


@pytest.mark.parametrize("method,lr", [("lora", "1e-2"), ("qlora", "1e-2"), ("full", "3e-3")])
def test_method_trains_and_exports(method, lr, tmp_path):
    run = tmp_path / method
    train(
        run,
        f"method={method}",
        f"optim.learning_rate={lr}",
        "train.max_steps=12",
        "optim.warmup_ratio=0",
        "train.micro_batch_size=8",
        env={"MALLOC_MMAP_THRESHOLD_": "131072"},
    )
    assert_loss_falls(run)
    assert_merged_loads_and_generates(run)
    assert_merged_is_the_trained_model(run, quantized=method == "qlora")
    rec = record(run)
    assert rec["world_size"] == 1 and rec["precision"] == "fp32"
    assert rec["plan"]["attention"] == "sdpa_packed"  # auto's choice on the CPU for tiny_llama
    assert rec["data"]["key"] and rec["versions"]["torch"]
    assert (run / "curves.png").stat().st_size > 1000
    assert rec["metrics"]["loss.eval_loss"] > 0 and rec["objective"]["name"] == "loss.eval_loss"
    # The plan's memory estimate is within 20% of the measured peak: on this tiny model mostly one
    # 256-position chunk of the loss's logits over the 49k vocabulary, which 8 rows fill (2 rows
    # supervise 125 positions, and run.json sizes the term by that). The plan estimates live
    # memory; the RSS also holds what glibc keeps, and how much depends on the process's history
    # (a process that has just built the data keeps more). With every allocation of 128 KiB or more
    # mapped on its own (MALLOC_MMAP_THRESHOLD_), the RSS follows live memory.
    assert rec["plan"]["memory"]["loss_positions"] == min(256, rec["data"]["most_supervised_per_micro_batch"])
    assert 0.8 <= rec["memory"]["measured_over_estimate"] <= 1.2, rec["memory"]
    if method == "full":
        assert rec["export"]["parity"] is None
    else:
        from peft import AutoPeftModelForCausalLM

        assert AutoPeftModelForCausalLM.from_pretrained(run / "adapter") is not None
        # QLoRA trains against a 4-bit base but merges into the fp32 one: parity is checked there
        assert rec["export"]["parity"]["max_abs_logit_diff"] < 1e-4


@pytest.mark.parametrize(
    "variant", ["method.lora.use_dora=true", "method.lora.use_rslora=true"], ids=["dora", "rslora"]
)
def test_lora_variants_train_and_merge(variant, tmp_path):
    train(
        tmp_path,
        variant,
        "method.lora.target_modules=[q_proj,v_proj]",
        "optim=adamw_8bit",
        "optim.learning_rate=1e-2",
        "train.max_steps=4",
        "train.gradient_checkpointing=true",
        "train.gradient_accumulation_steps=2",
        "optim.warmup_ratio=0",
    )
    cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert cfg[variant.split(".")[-1].split("=")[0]] is True and set(cfg["target_modules"]) == {"q_proj", "v_proj"}
    assert record(tmp_path)["export"]["parity"]["max_abs_logit_diff"] < 1e-4
    assert_merged_is_the_trained_model(tmp_path)


def test_export_command_rebuilds_merged_from_run_dir(tmp_path):
    """Two exports of one run at once (they take turns under the run's merge lock), each through the
    installed script, which exits 0 after success; merged/ comes back byte for byte."""
    import shutil
    import subprocess

    from ..conftest import REPO

    train(tmp_path, "train.max_steps=2")
    before = (tmp_path / "merged" / "model.safetensors").read_bytes()
    shutil.rmtree(tmp_path / "merged")
    procs = [
        subprocess.Popen(
            [shutil.which("hydratune-export"), str(tmp_path)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert (tmp_path / "merged" / "model.safetensors").read_bytes() == before
    assert not list(tmp_path.glob(".merged.*-*"))
