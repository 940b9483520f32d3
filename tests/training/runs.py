"""Run the real `train` console script (as users do) on the tiny model, and read what it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import REPO

TINY = [
    "model=tiny_llama",
    "dataset.max_length=128",
    "train.micro_batch_size=2",
    "eval.tasks.loss.max_rows=8",
    "train.sample_prompt=null",
    "train.report_to=[]",
]


def train(
    run_dir: Path, *overrides: str, timeout: int = 600, check: bool = True, env: dict | None = None, cwd: Path = REPO
) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    result = subprocess.run(
        [sys.executable, "-m", "hydratune.commands.train", *TINY, *overrides, f"hydra.run.dir={run_dir}"],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env=env,
    )
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def command(
    name: str, *args: str, cwd: Path = REPO, env: dict | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """A console script as a user types it (hydratune-export, hydratune-eval, hydratune-chat, train)."""
    import shutil

    return subprocess.run(
        [shutil.which(name), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env=dict(os.environ, OMP_NUM_THREADS="1", **(env or {})),
    )


def tiny_model_dir(target: Path) -> Path:
    """The tiny test model (tiny_llama: random weights and SmolLM2's tokenizer) as a plain model folder."""
    import shutil

    from hydratune.cache_dirs import cache_root
    from hydratune.commands.cli import compose_spec
    from hydratune.models.model_loading import model_location

    from ..conftest import cpu_env

    spec = compose_spec(["model=tiny_llama"], env=cpu_env())
    shutil.copytree(model_location(spec.model, cache_root()), target, ignore=shutil.ignore_patterns("manifest.json"))
    return target


def free_port() -> int:
    """A TCP port nothing listens on now, for a rendezvous endpoint on localhost."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], add_generation_prompt=True, return_dict=True, return_tensors="pt"
    )
    out = model.generate(**inputs, max_new_tokens=4, do_sample=False, min_new_tokens=4)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 4
    assert torch.isfinite(model(**inputs).logits).all()


def held_out_loss(model, run_dir: Path) -> float:
    """The held-out loss the way the Trainer's evaluation computes it: the run's own eval rows in
    order, batches of train.micro_batch_size, each batch's mean over its supervised tokens, averaged
    over rows."""
    import torch

    from hydratune.config.spec_file import load_spec
    from hydratune.data.prepare_data import run_preprocess
    from hydratune.training.collate import PackedCollator

    spec = load_spec(run_dir)
    rows = run_preprocess(spec).load("eval")
    rows = rows.select(range(min(spec.eval.tasks["loss"].max_rows or len(rows), len(rows))))
    collate = PackedCollator(pad_token_id=0)
    total, count, size = 0.0, 0, spec.train.micro_batch_size
    model.eval()
    with torch.no_grad():
        for start in range(0, len(rows), size):
            batch = collate([rows[i] for i in range(start, min(start + size, len(rows)))])
            loss = model(**batch, use_cache=False).loss
            total += float(loss) * batch["input_ids"].shape[0]
            count += batch["input_ids"].shape[0]
    return total / count


def assert_merged_is_the_trained_model(run_dir: Path, *, rel: float = 1e-4, quantized: bool = False) -> None:
    """merged/ scores the held-out loss that training measured last, and not the base's: the exported
    weights are the trained ones (a zero or lost update would give the base's loss). QLoRA trained
    against a 4-bit base but merges into the full-precision one, so its merged loss cannot equal the
    training's: there the adapter must still lower the full-precision base's held-out loss."""
    import torch
    from transformers import AutoModelForCausalLM

    from hydratune.cache_dirs import cache_root
    from hydratune.config.spec_file import load_spec
    from hydratune.models.model_loading import load_base_model

    trained = record(run_dir)["metrics"]["loss.eval_loss"]
    merged = held_out_loss(AutoModelForCausalLM.from_pretrained(run_dir / "merged"), run_dir)
    spec = load_spec(run_dir)
    base = held_out_loss(
        load_base_model(spec.model, cache_root(spec.run.cache_dir), dtype=torch.float32, attn_implementation="sdpa"),
        run_dir,
    )
    if quantized:
        assert merged < base - 0.05, (merged, trained, base)
        return
    assert merged == pytest.approx(trained, rel=rel), (merged, trained, base)
    assert abs(merged - base) > 20 * rel * abs(base), (merged, trained, base)
