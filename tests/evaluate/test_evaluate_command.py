"""The evaluate command end to end on the embedded SmolLM2, and merged vs adapter predictions."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from ..conftest import REPO
from ..training.runs import train

pytestmark = pytest.mark.slow


def evaluate(*args: str) -> subprocess.CompletedProcess:
    """Through the installed console script: it must exit 0 after success (not print a dict and exit 1)."""
    out = subprocess.run([shutil.which("hydratune-eval"), *args], capture_output=True, text=True, cwd=REPO, timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return out


def predictions(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_evaluate_embedded_model_on_gsm8k(gsm8k_dir, tmp_path):
    out = evaluate(
        "embedded:smollm2-135m-instruct",
        "--task",
        "gsm8k",
        "--gsm8k-path",
        str(gsm8k_dir),
        "--max-samples",
        "3",
        "--max-new-tokens",
        "96",
        "--out",
        str(tmp_path),
    )
    assert "| gsm8k | strict_accuracy |" in out.stdout and "problems/s" in out.stdout
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    rows = predictions(tmp_path / "predictions.jsonl")
    assert len(rows) == 3 and all(r["generated"] for r in rows)
    assert {"question", "gold", "generated", "extracted_strict", "strict_accuracy"} <= set(rows[0])
    for metric in ("strict_accuracy", "flexible_accuracy"):
        recount = sum(r[metric] for r in rows) / len(rows)
        assert metrics["tuned"]["gsm8k"]["metrics"][metric]["value"] == recount


def test_merged_and_adapter_predict_the_same(gsm8k_dir, tmp_path):
    run = tmp_path / "run"
    train(
        run,
        "model=smollm2_135m",
        "dataset.max_length=128",
        "train.micro_batch_size=1",
        "train.max_steps=2",
        "optim.learning_rate=5e-3",
        "eval=[none]",
    )
    common = [
        "--task",
        "gsm8k",
        "--gsm8k-path",
        str(gsm8k_dir),
        "--max-samples",
        "3",
        "--max-new-tokens",
        "48",
        "--base",
        "none",
    ]
    evaluate(str(run / "merged"), *common, "--out", str(tmp_path / "merged"))
    evaluate(str(run / "adapter"), *common, "--out", str(tmp_path / "adapter"))
    merged = [r["generated"] for r in predictions(tmp_path / "merged" / "predictions.jsonl")]
    adapter = [r["generated"] for r in predictions(tmp_path / "adapter" / "predictions.jsonl")]
    assert merged == adapter and all(merged)
