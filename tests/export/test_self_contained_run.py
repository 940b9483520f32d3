"""A run is self-contained: trained on relative paths (model, data, template), it exports, publishes,
evaluates and chats from another directory after its data moved away; a later evaluation never
overwrites the run's own."""

from __future__ import annotations

import json
import shutil

import pytest

from hydratune.models.chat_templates import CHAT_TEMPLATES

from ..conftest import REPO
from ..pipeline.test_run_directory import snapshot
from ..training.runs import command, record, tiny_model_dir, train

pytestmark = pytest.mark.slow

GENERATED_EVAL = [
    "eval=[loss,gsm8k]",
    "eval.tasks.gsm8k.path=generated:arithmetic",
    "eval.tasks.gsm8k.config_name=null",
    "eval.tasks.gsm8k.max_samples=2",
    "eval.tasks.gsm8k.max_new_tokens=4",
]


def test_a_run_works_from_anywhere_after_its_data_moved(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(REPO / "examples" / "bring_your_own_data" / "alpaca_sample.jsonl", work / "rows.jsonl")
    (work / "chat.jinja").write_text(CHAT_TEMPLATES["chatml"])
    tiny_model_dir(work / "base")
    train(
        "runs/first",
        "model.name=base",
        "model.random_init=false",
        "model.chat_template=chat.jinja",
        "dataset.path=rows.jsonl",
        "dataset.format=alpaca",
        "dataset.eval_split=null",
        "dataset.eval_fraction=0.1",
        "train.max_steps=2",
        *GENERATED_EVAL,
        cwd=work,
    )
    run = work / "runs" / "first"
    spec = json.loads((run / "spec.json").read_text())
    assert spec["model"]["name"] == str(work / "base") and spec["dataset"]["path"] == str(work / "rows.jsonl")
    assert spec["model"]["chat_template"] == str(work / "chat.jinja")
    assert "dataset.path=rows.jsonl" in record(run)["command"]  # the command as typed

    (work / "rows.jsonl").rename(tmp_path / "moved.jsonl")
    exported = command("hydratune-export", str(run), cwd="/")
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert json.loads(exported.stdout[exported.stdout.index("{") :])["parity"]["max_abs_logit_diff"] < 1e-3

    pushed = command(
        "hydratune-export", str(run), "--push-to-hub", "me/tiny-alpaca", cwd="/", env={"HF_HUB_OFFLINE": "1"}
    )
    assert pushed.returncode == 1 and "HF_HUB_OFFLINE=1 is set" in pushed.stderr, pushed.stderr[-3000:]
    card = (run / "merged" / "README.md").read_text()
    assert f"| {work / 'rows.jsonl'}[train] |" in card  # the run's own copy of the data report

    chatted = command("hydratune-chat", str(run), "--prompt", "What is 2 + 3?", "--max-new-tokens", "4", cwd="/")
    assert chatted.returncode == 0, chatted.stderr[-3000:]

    # a later evaluation goes beside the run's own, which the card and the summary read
    own = snapshot(run / "eval")
    evaluated = command("hydratune-eval", str(run), "--max-samples", "2", "--max-new-tokens", "4", cwd="/")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    (later,) = [p for p in (run / "eval").iterdir() if p.is_dir()]
    assert (later / "metrics.json").is_file() and f"results: {later / 'metrics.json'}" in evaluated.stdout
    assert {k: v for k, v in snapshot(run / "eval").items() if not k.startswith(later.name)} == own
    refused = command("hydratune-eval", str(run), "--max-samples", "2", "--out", str(run / "eval"), cwd="/")
    assert (
        refused.returncode == 2
        and "already holds an evaluation (metrics.json), which is never written over" in refused.stderr
    )
    assert {k: v for k, v in snapshot(run / "eval").items() if not k.startswith(later.name)} == own
