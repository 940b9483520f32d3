"""Run the real `train` console script (as users do) on the tiny model, and read what it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ..conftest import REPO

TINY = ["model=tiny_llama", "dataset.max_length=128", "train.micro_batch_size=2", "eval.tasks.loss.max_rows=8",
        "train.sample_prompt=null", "train.report_to=[]"]


def train(run_dir: Path, *overrides: str, timeout: int = 600, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-m", "hydratune.train", *TINY, *overrides, f"hydra.run.dir={run_dir}"],
        capture_output=True, text=True, cwd=REPO, timeout=timeout, env=env,
    )
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def losses(run_dir: Path) -> list[float]:
    return [e["loss"] for e in record(run_dir)["log_history"] if "loss" in e]


def assert_loss_falls(run_dir: Path) -> None:
    values = losses(run_dir)
    assert len(values) >= 6, values
    assert sum(values[-3:]) / 3 < sum(values[:3]) / 3 - 0.05, values


def assert_merged_loads_and_generates(run_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merged = run_dir / "merged"
    tokenizer = AutoTokenizer.from_pretrained(merged)
    model = AutoModelForCausalLM.from_pretrained(merged)
    inputs = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True,
                                           return_dict=True, return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=4, do_sample=False, min_new_tokens=4)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 4
    assert torch.isfinite(model(**inputs).logits).all()
