"""Mistakes a user makes at the console: each ends in exit 2 and one message naming the fix, never a
traceback, and a fix the message suggests is one the user can type and that works."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from hydratune.commands.cli import CONFIG_DIR, compose_spec
from hydratune.config.problems import ConfigError
from hydratune.training.checkpoints import COMPLETE_MARKER

from ..conftest import cpu_env
from ..training.runs import command, train


@pytest.fixture(scope="module")
def unfinished_run(tmp_path_factory) -> Path:
    """A run directory that holds a run's spec and nothing trained: what a dry run or a run that stopped
    before its first checkpoint leaves."""
    run_dir = tmp_path_factory.mktemp("unfinished") / "run"
    train(run_dir, "run.dry_run=true")
    assert (run_dir / "spec.json").is_file() and not (run_dir / "adapter").exists()
    return run_dir


def assert_refused(result, *needles: str) -> None:
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-4000:]
    assert "Traceback" not in result.stderr, result.stderr[-4000:]
    for needle in needles:
        assert needle in result.stderr, result.stderr[-4000:]


def test_export_of_a_missing_checkpoint_names_the_fix(unfinished_run):
    missing = unfinished_run / "checkpoints" / "checkpoint-999"
    assert_refused(command("hydratune-export", str(missing)), "no such checkpoint", "train.resume=auto")


def test_export_of_a_run_without_trained_weights_names_its_checkpoints(unfinished_run, tmp_path):
    assert_refused(command("hydratune-export", str(unfinished_run)), "has no adapter/", "train.resume=auto")
    checkpoint = unfinished_run / "checkpoints" / "checkpoint-4"
    (checkpoint.parent / "checkpoint-6").mkdir(parents=True)  # its save did not finish: never suggested
    checkpoint.mkdir()
    (checkpoint / COMPLETE_MARKER).write_text("{}")
    try:
        refused = command("hydratune-export", str(unfinished_run))
        assert_refused(refused, f"hydratune-export {checkpoint}")
        assert "checkpoint-6" not in refused.stderr
    finally:
        shutil.rmtree(checkpoint)
        (checkpoint.parent / "checkpoint-6").rmdir()


@pytest.mark.parametrize("name", ["hydratune-chat", "hydratune-eval"])
def test_chat_and_eval_of_a_run_without_merged_name_the_fix(unfinished_run, name):
    extra = ["--prompt", "hi"] if name == "hydratune-chat" else []
    assert_refused(command(name, str(unfinished_run), *extra), "has no merged/", "train.resume=auto")


@pytest.mark.parametrize(
    "text,said",
    [
        ('{"zero_optimization": 2}', "zero_optimization is 2, not an object"),
        ('{"zero_optimization": [2]}', "zero_optimization is [2], not an object"),
        ("[1]", "holds a JSON list, not an object"),
    ],
)
def test_a_deepspeed_file_of_the_wrong_shape_is_a_problem(tmp_path, text, said):
    path = tmp_path / "ds.json"
    path.write_text(text)
    overrides = ["+experiment=quickstart", "sharding=deepspeed_zero2", f"sharding.deepspeed.config_file={path}"]
    with pytest.raises(ConfigError) as info:
        compose_spec(overrides, env=cpu_env())
    assert any(said in str(p) for p in info.value.problems), info.value.render()
    path.write_text(json.dumps({"zero_optimization": {"stage": 2}}))  # the fix it names
    compose_spec(overrides, env=cpu_env())


def test_the_deepspeed_shape_refusal_through_the_console_script(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text('{"zero_optimization": 2}')
    result = train(
        tmp_path / "run",
        "sharding=deepspeed_zero2",
        f"sharding.deepspeed.config_file={path}",
        "run.dry_run=true",
        check=False,
        timeout=120,
    )
    assert_refused(result, "zero_optimization is 2, not an object")


def test_removing_what_an_experiment_set_names_the_override_and_it_works(tmp_path):
    """The issue's case, at the console: the user never typed method.sft_weight, the experiment did."""
    typed = ["+experiment=arithmetic_dpo", "method=kto", "run.dry_run=true"]
    refused = train(tmp_path / "a", *typed, check=False, timeout=120)
    assert_refused(refused, "~method.sft_weight")
    train(tmp_path / "b", *typed, "~method.sft_weight", timeout=120)  # the fix, typed as it was said


EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))
METHODS = sorted(p.stem for p in (CONFIG_DIR / "method").glob("*.yaml"))


def removals(overrides: list[str]) -> list[str]:
    """The `~key` overrides the refusal of `overrides` suggests; a removal it words otherwise fails the test."""
    try:
        compose_spec(overrides, env=cpu_env(cuda=True, cuda_bf16=True, gpu_count=8))
    except ConfigError as error:
        problems = error.problems
    else:
        return []
    said = []
    for problem in problems:
        if "remove" in problem.fix:
            found = re.findall(r"~[\w.]+", problem.fix)
            assert found, f"{' '.join(overrides)}: a removal the user cannot type: {problem}"
            said += found
    return said


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_removal_an_experiment_needs_is_typeable_and_works(experiment):
    """Each experiment under each method: every removal a refusal suggests is a `~key`, and applying
    them leaves no problem about those keys."""
    for method in METHODS:
        overrides = [f"+experiment={experiment}", f"method={method}"]
        said = removals(overrides)
        if said:
            assert removals([*overrides, *sorted(set(said))]) == [], (overrides, said)
