"""A run killed after a checkpoint and resumed ends where an uninterrupted run ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from safetensors.torch import load_file

from hydratune.training.checkpoints import COMPLETE_MARKER

from ..conftest import REPO, own_cache
from .runs import TINY, losses, train

COMMON = [
    "train.max_steps=16",
    "train.save_steps=2",
    "train.save_total_limit=3",
    "optim.learning_rate=1e-2",
    "train.resume=auto",
]


def _kill_after_first_checkpoint(run_dir, *overrides) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hydratune.commands.train", *TINY, *overrides, f"hydra.run.dir={run_dir}"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    deadline = time.time() + 300
    marker = run_dir / "checkpoints" / "checkpoint-4" / COMPLETE_MARKER
    while time.time() < deadline and not marker.exists() and proc.poll() is None:
        time.sleep(0.01)
    # like a crashed machine: `train`, torchrun and every rank die at once, none cleans up
    family = [proc.pid, *(c.pid for c in psutil.Process(proc.pid).children(recursive=True))]
    for pid in family:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    assert marker.exists(), "the run ended before its checkpoint could be awaited"
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (run_dir / "run.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("case", ["single", "ddp", "dpo"])
def test_killed_run_resumes_to_the_same_end(case, tmp_path):
    from .test_post_training import dpo

    extra = [*COMMON, f"sharding={'ddp' if case == 'ddp' else 'single'}", "method.lora.dropout=0"]
    if case == "dpo":
        extra += [*dpo(tmp_path, "eval=[none]"), "optim.learning_rate=5e-3"]
    train(tmp_path / "straight", *extra)
    _kill_after_first_checkpoint(tmp_path / "resumed", *extra)
    train(tmp_path / "resumed", *extra)

    straight, resumed = losses(tmp_path / "straight"), losses(tmp_path / "resumed")
    assert len(resumed) == len(straight) == 16
    assert resumed == pytest.approx(straight, abs=1e-5)
    a = load_file(tmp_path / "straight" / "adapter" / "adapter_model.safetensors")
    b = load_file(tmp_path / "resumed" / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5


@pytest.mark.slow
def test_killed_grpo_run_resumes_from_its_checkpoint(tmp_path):
    """Sampling makes GRPO's completions differ from an uninterrupted run's; what must hold is
    that the run goes on from the checkpoint's step, optimizer and adapter, to its end."""
    from .runs import record
    from .test_post_training import GRPO

    extra = [*COMMON, *GRPO]
    _kill_after_first_checkpoint(tmp_path / "run", *extra)
    train(tmp_path / "run", *extra)
    rec = record(tmp_path / "run")
    assert rec["resumed_from"].endswith("checkpoint-4") and rec["metrics"]["global_step"] == 16
    # steps 1-4 come back with the checkpoint's trainer state, 5-16 ran after the resume
    assert [e["step"] for e in rec["log_history"] if "loss" in e] == list(range(1, 17))


def reference_log_probs(data_dir) -> list[float]:
    """The reference log-probs TRL cached beside the data shards (one cache file per data and start model):
    each pair's chosen, then rejected."""
    import datasets

    (cached,) = sorted(data_dir.glob("cache-*.arrow"))
    rows = datasets.Dataset.from_file(str(cached))
    return [logp for pair in zip(rows["ref_chosen_logps"], rows["ref_rejected_logps"]) for logp in pair]


@pytest.mark.slow
def test_a_resumed_run_computes_its_reference_from_the_start_model(tmp_path):
    """Full-weight DPO with precomputed reference log-probs, killed after a checkpoint and resumed with
    those log-probs deleted: recomputed on resume, they must be the start model's (a fresh run's), not
    the checkpoint's. Each run has its own cache, so neither reads the other's."""
    from pathlib import Path

    from .runs import record
    from .test_post_training import dpo

    extra = [
        *dpo(tmp_path, "method.weights=full", "method.precompute_reference=true", "eval=[none]"),
        *COMMON,
        "train.max_steps=8",
        "optim.learning_rate=1e-3",
    ]
    train(tmp_path / "fresh", *extra, f"run.cache_dir={own_cache(tmp_path / 'cache-fresh')}")
    resumed = [*extra, f"run.cache_dir={own_cache(tmp_path / 'cache-resumed')}"]
    _kill_after_first_checkpoint(tmp_path / "resumed", *resumed)
    (data_dir,) = [p for p in (tmp_path / "cache-resumed" / "data").iterdir() if p.is_dir()]
    for cached in data_dir.glob("cache-*.arrow"):
        cached.unlink()
    train(tmp_path / "resumed", *resumed)
    assert record(tmp_path / "resumed")["resumed_from"].endswith("checkpoint-4")
    fresh = reference_log_probs(Path(record(tmp_path / "fresh")["data"]["directory"]))
    again = reference_log_probs(data_dir)
    assert len(fresh) == 2 * 64 and again == pytest.approx(fresh, abs=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize(
    "budget", [["train.max_steps=4"], ["train.max_steps=null", "dataset.max_rows=8"]], ids=["max_steps", "epochs"]
)
def test_a_run_resumed_at_its_step_budget_trains_no_step_and_keeps_its_loss(budget, tmp_path):
    """Killed after its last checkpoint (during export) and resumed, a run has no step left. The
    Trainer would run one more past a max_steps budget (its loop checks the budget after a step),
    and its own mean loss over the steps one call trained reads 0.0 where none ran. The record
    keeps the run's loss, from the checkpoint's log history, and a sweep optimizing train_loss
    reads that."""
    from .runs import record

    extra = [*COMMON, *budget, "method.lora.dropout=0", "eval=[none]"]
    train(tmp_path / "straight", *extra)
    _kill_after_first_checkpoint(tmp_path / "resumed", *extra)  # checkpoint-4 is the last one
    train(tmp_path / "resumed", *extra)
    straight, resumed = record(tmp_path / "straight"), record(tmp_path / "resumed")
    assert resumed["resumed_from"].endswith("checkpoint-4") and resumed["metrics"]["global_step"] == 4
    assert straight["metrics"]["train_loss"] > 1.0
    assert resumed["metrics"]["train_loss"] == pytest.approx(straight["metrics"]["train_loss"], rel=1e-6)
    assert resumed["objective"] == {
        "name": "train_loss",
        "value": resumed["metrics"]["train_loss"],
        "direction": "minimize",
    }
    a = load_file(tmp_path / "straight" / "adapter" / "adapter_model.safetensors")
    b = load_file(tmp_path / "resumed" / "adapter" / "adapter_model.safetensors")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5
