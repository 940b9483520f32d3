"""Experiment tracking through `train`: MLflow read back with its client, W&B in offline mode."""

from __future__ import annotations

import glob
import json
import struct

import pytest

from ..training.runs import record, train

pytestmark = pytest.mark.slow

SECRET = "hf_do_not_log_this_3f9a2c"


def wandb_history(run_dir) -> list[dict]:
    """The history records of an offline W&B run: its .wandb file is a LevelDB-style log of protobufs."""
    from wandb.proto import wandb_internal_pb2

    (path,) = glob.glob(str(run_dir / "wandb" / "offline-run-*" / "run-*.wandb"))
    raw = open(path, "rb").read()
    block, pos, pending, history = 32768, 7, b"", []  # 7: the ":W&B" header
    while pos + 7 <= len(raw):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos:pos + 7])
        if kind == 0 and length == 0:
            break
        pending += raw[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(pending)
            pending = b""
            if rec.WhichOneof("record_type") == "history":
                history.append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in rec.history.item})
    return history


def assert_same_steps_and_losses(got: list[tuple[int, float]], expected: list[tuple[int, float]]) -> None:
    """Steps exactly, losses to float precision (a tracker may store them as float32 or round-trip JSON)."""
    assert [step for step, _ in got] == [step for step, _ in expected]
    assert [loss for _, loss in got] == pytest.approx([loss for _, loss in expected])


def test_mlflow_and_offline_wandb_receive_the_run(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("HF_TOKEN", SECRET)
    store = f"sqlite:///{tmp_path}/mlflow.db"
    run_dir = tmp_path / "run"
    train(run_dir, "train.max_steps=3", "train.report_to=[mlflow,wandb]", f"train.mlflow.tracking_uri={store}",
          "eval=[loss,gsm8k]", "eval.tasks.gsm8k.path=generated:arithmetic", "eval.tasks.gsm8k.config_name=null",
          "eval.tasks.gsm8k.max_samples=4", "eval.tasks.gsm8k.max_new_tokens=4")
    logged = [(e["step"], e["loss"]) for e in record(run_dir)["log_history"] if "loss" in e]
    assert len(logged) == 3

    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("hydratune").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    spec = record(run_dir)["spec"]
    assert float(run.data.params["optim.learning_rate"]) == spec["optim"]["learning_rate"]
    assert run.data.params["model.name"] == spec["model"]["name"]
    history = client.get_metric_history(run.info.run_id, "loss")
    assert_same_steps_and_losses([(m.step, m.value) for m in history], logged)
    metrics = record(run_dir)["metrics"]
    assert run.data.metrics["gsm8k.strict_accuracy"] == metrics["gsm8k.strict_accuracy"]
    table = json.loads((run_dir / "eval" / "metrics.json").read_text())["tuned"]["gsm8k"]["metrics"]["strict_accuracy"]
    assert [run.data.metrics["gsm8k.strict_accuracy.ci95_low"], run.data.metrics["gsm8k.strict_accuracy.ci95_high"]] == table["ci95"]
    assert "base.gsm8k.strict_accuracy" in run.data.metrics
    files = {a.path for a in client.list_artifacts(run.info.run_id)} | {a.path for a in client.list_artifacts(run.info.run_id, "eval")}
    assert {"run.json", "spec.json", "curves.png", "eval/metrics.json", "eval/predictions.jsonl", "eval/predictions_base.jsonl"} <= files
    local = client.download_artifacts(run.info.run_id, "run.json", str(tmp_path / "downloaded"))
    assert json.loads(open(local).read())["metrics"] == metrics

    wandb_logged = [(h["train/global_step"], h["train/loss"]) for h in wandb_history(run_dir) if "train/loss" in h]
    assert_same_steps_and_losses(wandb_logged, logged)

    for path in tmp_path.rglob("*"):  # the store, its artifacts, the W&B files, the run directory
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
