"""train.compile: compiled runs train as eager ones do, through the `train` console script.

Each case trains the same spec twice, eagerly and compiled, and compares every logged loss
and the exported weights; run.json says what was compiled, so a run that silently stayed
eager fails here (its graphs would be 0)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .runs import record, train
from .test_post_training import GRPO, dpo
from .test_sharded_post_training import largest_gap, merged_weights

pytestmark = pytest.mark.slow

# Inductor reorders floating-point reductions (fused norms and activations): the losses agree
# to rounding, far below what one step of training changes.
TOLERANCE = 1e-4

STEPS = ["train.max_steps=6", "optim.warmup_ratio=0", "optim.learning_rate=1e-2"]


def logged(run_dir: Path, key: str) -> list[float]:
    return [e[key] for e in record(run_dir)["log_history"] if key in e and "eval_loss" not in e]


def assert_compiled_trains_as_eager(eager: Path, compiled: Path, mode: str) -> None:
    done = record(compiled)["compile"]
    assert done["mode"] == mode and done["modules"] >= 1 and done["graphs"] >= 1, done
    assert record(eager)["compile"]["graphs"] == 0
    assert logged(compiled, "loss") == pytest.approx(logged(eager, "loss"), abs=TOLERANCE)
    trained, reference = merged_weights(compiled), merged_weights(eager)
    assert trained.keys() == reference.keys()
    assert largest_gap(trained, reference) < TOLERANCE


def test_compiled_layers_and_model_train_as_eager(tmp_path):
    common = [*STEPS, "eval=[none]"]  # the held-out loss under compile runs in the DPO case below
    train(tmp_path / "off", *common)
    for mode in ("layers", "model"):
        train(tmp_path / mode, *common, f"train.compile={mode}")
        assert_compiled_trains_as_eager(tmp_path / "off", tmp_path / mode, mode)
    assert record(tmp_path / "layers")["compile"]["modules"] == 2  # each of tiny_llama's layers


@pytest.mark.distributed
def test_compiled_dpo_under_fsdp_trains_as_eager(tmp_path):
    common = [*dpo(tmp_path, "method.weights=full", "train.micro_batch_size=2"), "sharding=fsdp", "train.max_steps=3"]
    train(tmp_path / "off", *common)
    train(tmp_path / "layers", *common, "train.compile=layers")
    assert_compiled_trains_as_eager(tmp_path / "off", tmp_path / "layers", "layers")


@pytest.mark.distributed
def test_compiled_grpo_under_ddp_samples_eagerly_and_trains_as_eager(tmp_path):
    """GRPO samples with the model it trains: its compiled layers run eagerly for `generate`
    (with a KV cache they would recompile per layer), so the sampled rewards are the same."""
    common = [*GRPO, "sharding=ddp", "train.max_steps=3", "train.micro_batch_size=2"]
    train(tmp_path / "off", *common)
    train(tmp_path / "layers", *common, "train.compile=layers")
    assert_compiled_trains_as_eager(tmp_path / "off", tmp_path / "layers", "layers")
    rewards = logged(tmp_path / "layers", "reward")
    assert rewards == logged(tmp_path / "off", "reward") and len(rewards) == 3
