"""`hydratune-export RUN --push-to-hub`: the model card from the run's records, and the upload."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ..conftest import REPO
from ..training.runs import record, train

pytestmark = pytest.mark.slow

EVAL = [
    "eval=[loss,gsm8k]",
    "eval.tasks.gsm8k.path=generated:arithmetic",
    "eval.tasks.gsm8k.config_name=null",
    "eval.tasks.gsm8k.max_samples=4",
    "eval.tasks.gsm8k.max_new_tokens=4",
]


def export(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [shutil.which("hydratune-export"), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        env={**os.environ, **env},
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("published") / "run"
    train(run_dir, "train.max_steps=2", "optim.lr=3e-4", *EVAL)
    return run_dir


def test_offline_push_writes_the_card_and_names_the_endpoint(run_dir):
    result = export(str(run_dir), "--push-to-hub", "me/tiny-arithmetic", "--private", HF_HUB_OFFLINE="1")
    assert result.returncode == 1, result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(
        "Error: cannot push to https://huggingface.co/me/tiny-arithmetic: HF_HUB_OFFLINE=1 is set"
    ), error
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
    result = export(
        str(run_dir),
        "--push-to-hub",
        "me/tiny-lora",
        "--adapter-only",
        HF_HUB_OFFLINE="0",
        HF_ENDPOINT="http://127.0.0.1:9",
        HF_TOKEN="hf_unused_test_token",
    )
    assert result.returncode == 1
    assert (
        result.stderr.strip().splitlines()[-1].startswith("Error: cannot reach http://127.0.0.1:9 to push me/tiny-lora")
    ), result.stderr
    card = (run_dir / "adapter" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: peft\n") and "AutoPeftModelForCausalLM" in card


def test_bad_repository_id_is_refused_before_merging(run_dir):
    before = (run_dir / "merged" / "model.safetensors").stat().st_mtime_ns
    result = export(str(run_dir), "--push-to-hub", "no-owner", HF_HUB_OFFLINE="1")
    assert result.returncode == 2
    assert "--push-to-hub no-owner: is not a Hub repository id (give OWNER/NAME" in result.stderr
    assert (run_dir / "merged" / "model.safetensors").stat().st_mtime_ns == before


class RecordingApi:
    """huggingface_hub's client as push_folder uses it, recording every call (there is no Hub here).
    `existing`: the repositories there, by id, with whether each is private."""

    existing: dict[str, bool] = {}
    calls: list = []

    def repo_info(self, repo_id, **kwargs):
        import httpx
        from huggingface_hub.errors import RepositoryNotFoundError

        self.calls.append(("repo_info", repo_id, kwargs))
        if repo_id not in self.existing:  # as the Hub answers: 404
            request = httpx.Request("GET", f"https://huggingface.co/api/models/{repo_id}")
            raise RepositoryNotFoundError(f"{repo_id} not found", response=httpx.Response(404, request=request))
        return type("RepoInfo", (), {"private": self.existing[repo_id]})()

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", sorted(os.listdir(kwargs["folder_path"])), kwargs))
        return f"https://hub.example/{kwargs['repo_id']}/commit/1"


@pytest.fixture
def hub(monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    RecordingApi.existing, RecordingApi.calls = {}, []
    return RecordingApi


def test_push_uploads_the_folder_with_its_card_and_drops_what_it_no_longer_has(run_dir, hub):
    from hydratune.export.run_export import publish_run

    url = publish_run(run_dir, "me/tiny-lora", dtype_name=None, private=True, adapter_only=True)
    assert url == "https://hub.example/me/tiny-lora/commit/1"
    (_, _, _), (_, repo, create), (_, files, upload) = hub.calls
    assert repo == "me/tiny-lora" and create["private"] is True
    assert upload["folder_path"] == str(run_dir / "adapter") and upload["repo_id"] == "me/tiny-lora"
    assert {"README.md", "adapter_config.json", "adapter_model.safetensors"} <= set(files)
    # what an earlier push left and this folder lacks (a model since sharded) goes in the same commit
    assert upload["delete_patterns"] == ["*"]


def test_private_push_to_a_public_repository_is_refused_before_uploading(run_dir, hub, capsys):
    from hydratune.commands.export import main

    hub.existing = {"me/public-model": False}
    with pytest.raises(SystemExit) as exit_info:
        main([str(run_dir), "--push-to-hub", "me/public-model", "--private", "--adapter-only"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "exists and is public, and --private does not change an existing repository's visibility" in error
    assert "https://huggingface.co/me/public-model/settings" in error
    assert [call[0] for call in hub.calls] == ["repo_info"]  # nothing created, nothing uploaded
    # either way out works: without --private it publishes publicly, as asked
    main([str(run_dir), "--push-to-hub", "me/public-model", "--adapter-only"])
    assert [call[0] for call in hub.calls] == ["repo_info", "repo_info", "create_repo", "upload_folder"]


def test_a_chained_post_training_card_names_the_root_model_and_its_rows(run_dir, tmp_path):
    """DPO from the SFT run: the card describes preference rows (not packing, not supervised tokens)
    and names the base the chain started from, not the parent's merged/ path."""
    from ..training.test_post_training import dpo

    chained = tmp_path / "dpo"
    train(
        chained, *dpo(tmp_path, "train.max_steps=1", "eval=[none]"), f"model.name={run_dir}", "model.random_init=false"
    )
    result = export(str(chained), "--push-to-hub", "me/tiny-dpo", HF_HUB_OFFLINE="1")
    assert result.returncode == 1, result.stderr[-2000:]
    card = (chained / "merged" / "README.md").read_text()
    front_matter = card.split("---")[1]
    assert (
        str(run_dir) not in front_matter and "base_model" not in front_matter
    )  # the root is a random-weight test model
    assert "through the run `run` (sft)" in card
    assert "preference pairs (a prompt, a chosen and a rejected reply)" in card
    assert "packed" not in card and "supervised" not in card


def test_the_cards_base_model_is_the_root_of_the_chain():
    """A run two steps down a chain from the Hub's model: run.json's parents, as the card reads them."""
    from hydratune.export.model_card import model_card

    sft = {
        "run_dir": "/runs/sft",
        "model": "embedded:smollm2-135m-instruct",
        "random_init": False,
        "method": "sft",
        "parent": None,
    }
    dpo = {"run_dir": "/runs/dpo", "model": "/runs/sft", "random_init": False, "method": "dpo", "parent": sft}
    spec = {
        "model": {"name": "/runs/dpo", "random_init": False, "revision": None},
        "method": {
            "name": "grpo",
            "weights": "lora",
            "beta": 0.0,
            "max_completion_length": 64,
            "lora": {"rank": 8, "alpha": 16, "dropout": 0, "target_modules": ["all-linear"], "use_dora": False},
        },
        "dataset": {"path": "generated:arithmetic", "split": "train", "format": "qa", "max_length": 256, "mix": []},
        "optim": {"name": "adamw", "learning_rate": 1e-5, "scheduler": "cosine", "warmup_ratio": 0, "weight_decay": 0},
        "train": {"micro_batch_size": 4, "gradient_accumulation_steps": 1, "seed": 1},
    }
    card = model_card(
        Path("/nonexistent"),
        {"spec": spec, "parent": dpo, "metrics": {"global_step": 3}},
        repo_id="me/m",
        adapter=False,
    )
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct\n" in card and "/runs/" not in card.split("---")[1]
    assert "through the run `dpo` (dpo)" in card and "prompts of at most 256 tokens" in card
