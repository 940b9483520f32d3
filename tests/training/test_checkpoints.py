"""Checkpoints and run directories: nothing lost, nothing mixed."""

from __future__ import annotations

import json

import pytest

from hydratune.commands.cli import compose_spec
from hydratune.config.problems import ConfigError
from hydratune.export.merge_adapter import recover_merged
from hydratune.training.checkpoints import COMPLETE_MARKER, prune_checkpoints, resolve_resume, run_identity

from ..conftest import cpu_env
from .runs import train


def _checkpoint(directory, step, *, complete=True, identity=None):
    folder = directory / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text("{}")
    if complete:
        (folder / COMPLETE_MARKER).write_text(json.dumps({"global_step": step, "identity": identity or {}}))
    return folder


def test_pruning_counts_only_complete_checkpoints(tmp_path):
    for step, complete in ((2, True), (3, False), (4, True), (6, False)):
        _checkpoint(tmp_path, step, complete=complete)
    deleted = prune_checkpoints(tmp_path, keep=1)
    # the newest complete one stays; the incomplete checkpoint-6 (being written, or the newest crash) is not counted
    assert sorted(p.name for p in deleted) == ["checkpoint-2", "checkpoint-3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-4", "checkpoint-6"]


def _spec(tmp_path, *extra):
    return compose_spec(["model=tiny_llama", "train.resume=auto", *extra], output_dir=str(tmp_path), env=cpu_env())


def test_resume_auto_refuses_checkpoints_that_are_incomplete_or_of_another_run(tmp_path):
    spec = _spec(tmp_path)
    assert resolve_resume(spec, "key") is None  # nothing there: start at step 0
    _checkpoint(tmp_path / "checkpoints", 4, complete=False)
    with pytest.raises(ConfigError, match="holds checkpoints but none is complete") as info:
        resolve_resume(spec, "key")
    assert "run.overwrite=true" in info.value.render()

    _checkpoint(tmp_path / "checkpoints", 2, identity=run_identity(_spec(tmp_path, "optim.learning_rate=1e-3"), "key"))
    with pytest.raises(ConfigError, match="belongs to another run: optim.learning_rate=0.001 there, 0.0002 here"):
        resolve_resume(spec, "key")
    with pytest.raises(ConfigError, match="data.cache_key='key' there, 'other' here"):
        resolve_resume(_spec(tmp_path, "optim.learning_rate=1e-3"), "other")
    # the step budget may change between a run and its resumption
    longer = _spec(tmp_path, "optim.learning_rate=1e-3", "train.max_steps=50")
    assert resolve_resume(longer, "key") == str(tmp_path / "checkpoints" / "checkpoint-2")


def test_a_checkpoints_identity_holds_no_url_credentials_and_a_rotated_token_resumes(tmp_path):
    """run_identity() is written into every checkpoint's marker and printed by a refused resume."""
    typed = "train.mlflow.tracking_uri=https://alice:p@ss/w0rdZQX@mlflow.example:5000"
    identity = run_identity(_spec(tmp_path, typed), "key")
    assert "w0rdZQX" not in json.dumps(identity)
    assert identity["train.mlflow.tracking_uri"] == "https://mlflow.example:5000"
    folder = _checkpoint(tmp_path / "checkpoints", 2, identity=identity)
    rotated = "train.mlflow.tracking_uri=https://alice:n3w@mlflow.example:5000"
    assert resolve_resume(_spec(tmp_path, rotated, "train.max_steps=50"), "key") == str(folder)
    with pytest.raises(ConfigError) as refused:  # another run: its message names no credentials
        resolve_resume(_spec(tmp_path, rotated, "train.max_steps=50", "optim.learning_rate=1e-3"), "key")
    assert "belongs to another run" in refused.value.render() and "n3w" not in refused.value.render()


def test_a_save_clears_the_old_marker_before_writing(tmp_path, monkeypatch):
    """A rerun's checkpoint-N must not inherit the marker of an earlier checkpoint-N while it is being written."""
    from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

    from hydratune.training.hydratune_trainer import HydratuneTrainer

    model = LlamaForCausalLM(
        LlamaConfig(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            vocab_size=64,
        )
    )
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], save_strategy="no")
    trainer = HydratuneTrainer(model=model, args=args, identity={}, keep_checkpoints=2)
    stale = _checkpoint(tmp_path, 0)

    def killed_mid_save(self, *a, **k):
        raise RuntimeError("killed while writing")

    monkeypatch.setattr(Trainer, "save_model", killed_mid_save)
    with pytest.raises(RuntimeError):
        trainer._save_checkpoint(trainer.model, None)
    assert not (stale / COMPLETE_MARKER).exists()


def test_an_interrupted_merge_is_recovered(tmp_path):
    """What a kill between moving merged/ aside and renaming the new one in leaves behind."""
    (tmp_path / ".merged.old-1a2b3c4d").mkdir()
    (tmp_path / ".merged.old-1a2b3c4d" / "config.json").write_text("{}")
    (tmp_path / ".merged.tmp-5e6f7a8b").mkdir()
    recover_merged(tmp_path)
    assert (tmp_path / "merged" / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]


@pytest.mark.slow
def test_a_resume_is_decided_before_anything_is_written(tmp_path):
    """A finished run, then resumes that must be refused: every file stays as it was (hashed), and the
    run's MLflow run stays FINISHED. Then the fix the message gives: a larger step budget continues it."""
    from mlflow import MlflowClient

    from ..pipeline.test_run_directory import snapshot

    run, store = tmp_path / "run", f"sqlite:///{tmp_path}/mlflow.db"
    tracked = ["train.report_to=[mlflow]", f"train.mlflow.tracking_uri={store}"]
    train(run, "train.max_steps=2", "train.save_steps=2", *tracked)
    finished = snapshot(run)
    client = MlflowClient(store)
    (mlflow_run,) = client.search_runs([client.get_experiment_by_name("hydratune").experiment_id])

    refusals = {  # the command first: another learning rate, resumed into the finished run
        ("optim.learning_rate=1e-3",): "optim.learning_rate=0.0002 there, 0.001 here",
        (): "already finished at step 2 (raise train.max_steps to continue it, or pick a new hydra.run.dir)",
        ("train.save_steps=1",): "train.save_steps=2 there, 1 here",
    }
    for extra, message in refusals.items():
        out = train(run, "train.max_steps=2", "train.save_steps=2", *tracked, *extra, "train.resume=auto", check=False)
        assert out.returncode == 2 and message in out.stderr, out.stderr[-2000:]
        assert "Traceback" not in out.stderr
        assert snapshot(run) == finished
        assert client.get_run(mlflow_run.info.run_id).info.status == "FINISHED"

    train(run, "train.max_steps=4", "train.save_steps=2", *tracked, "train.resume=auto")
    rec = json.loads((run / "run.json").read_text())
    assert rec["resumed_from"] == str(run / "checkpoints" / "checkpoint-2") and rec["metrics"]["global_step"] == 4
    assert [e["step"] for e in rec["log_history"] if "loss" in e] == [1, 2, 3, 4]
    assert client.get_run(mlflow_run.info.run_id).info.status == "FINISHED"


@pytest.mark.slow
def test_a_finished_run_without_checkpoints_is_not_restarted_by_a_resume(tmp_path):
    from ..pipeline.test_run_directory import snapshot

    run = tmp_path / "run"
    train(run, "train.max_steps=1")
    finished = snapshot(run)
    out = train(run, "train.max_steps=3", "train.resume=auto", check=False)
    assert out.returncode == 2 and "finished at step 1 and kept no checkpoint to continue from" in out.stderr
    assert snapshot(run) == finished
