"""`hydratune-export RUN --push-to-hub`: the model card from the run's records, and the upload."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from ..conftest import REPO
from ..training.runs import record, train

pytestmark = pytest.mark.slow

EVAL = ["eval=[loss,gsm8k]", "eval.tasks.gsm8k.path=generated:arithmetic", "eval.tasks.gsm8k.config_name=null",
        "eval.tasks.gsm8k.max_samples=4", "eval.tasks.gsm8k.max_new_tokens=4"]


def export(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([shutil.which("hydratune-export"), *args], capture_output=True, text=True, cwd=REPO,
                          timeout=300, env={**os.environ, **env})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("published") / "run"
    train(run_dir, "train.max_steps=2", "optim.lr=3e-4", *EVAL)
    return run_dir


def test_offline_push_writes_the_card_and_names_the_endpoint(run_dir):
    result = export(str(run_dir), "--push-to-hub", "me/tiny-arithmetic", "--private", HF_HUB_OFFLINE="1")
    assert result.returncode == 1, result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: cannot push to https://huggingface.co/me/tiny-arithmetic: HF_HUB_OFFLINE=1 is set"), error
    assert "Traceback" not in result.stderr

    card = (run_dir / "merged" / "README.md").read_text()
    run = record(run_dir)
    assert card.startswith("---\nlibrary_name: transformers\n")
    assert "# me/tiny-arithmetic" in card
    assert f"Tokenized data cache key: `{run['data']['key']}`" in card
    assert "| generated:arithmetic[train] | 2,000 |" in card
    assert "lr 0.0003" in card and "| steps | 2 |" in card
    assert f"hydratune {run['versions']['hydratune']}" in card
    # the evaluation table, with the intervals run.json's evaluation holds
    metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
    low, high = metrics["tuned"]["gsm8k"]["metrics"]["strict_accuracy"]["ci95"]
    assert f"[{100 * low:.1f}, {100 * high:.1f}]" in card and "| gsm8k | strict_accuracy |" in card
    # the command that reproduces the run, as typed
    assert "train model=tiny_llama" in card and "optim.learning_rate=3e-4" in card and "++" not in card


def test_unreachable_endpoint_is_one_message(run_dir):
    result = export(str(run_dir), "--push-to-hub", "me/tiny-lora", "--adapter-only",
                    HF_HUB_OFFLINE="0", HF_ENDPOINT="http://127.0.0.1:9", HF_TOKEN="hf_unused_test_token")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("Error: cannot reach http://127.0.0.1:9 to push me/tiny-lora"), result.stderr
    card = (run_dir / "adapter" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: peft\n") and "AutoPeftModelForCausalLM" in card


def test_bad_repository_id_is_refused_before_merging(run_dir):
    before = (run_dir / "merged" / "model.safetensors").stat().st_mtime_ns
    result = export(str(run_dir), "--push-to-hub", "no-owner", HF_HUB_OFFLINE="1")
    assert result.returncode == 2
    assert "--push-to-hub no-owner: is not a Hub repository id (give OWNER/NAME" in result.stderr
    assert (run_dir / "merged" / "model.safetensors").stat().st_mtime_ns == before


def test_push_uploads_the_folder_with_its_card(run_dir, monkeypatch):
    """The upload itself, against a recording stand-in for huggingface_hub's client (no Hub here)."""
    import huggingface_hub

    from hydratune.export.command import publish_run

    calls = []

    class RecordingApi:
        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs))

        def upload_folder(self, **kwargs):
            calls.append(("upload_folder", sorted(os.listdir(kwargs["folder_path"])), kwargs))
            return "https://hub.example/me/tiny-lora/commit/1"

    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    url = publish_run(run_dir, "me/tiny-lora", dtype_name=None, private=True, adapter_only=True)
    assert url == "https://hub.example/me/tiny-lora/commit/1"
    (_, repo, create), (_, files, upload) = calls
    assert repo == "me/tiny-lora" and create["private"] is True
    assert upload["folder_path"] == str(run_dir / "adapter") and upload["repo_id"] == "me/tiny-lora"
    assert {"README.md", "adapter_config.json", "adapter_model.safetensors"} <= set(files)
