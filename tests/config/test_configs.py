"""Every YAML file under configs/ composes into a valid RunSpec (found recursively: none escapes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hydratune.commands.cli import CONFIG_DIR, compose_spec
from hydratune.config.spec import RunSpec

from ..conftest import REPO, cpu_env

ALL_YAML = sorted(p.relative_to(CONFIG_DIR) for p in Path(CONFIG_DIR).rglob("*.yaml"))


def overrides_for(rel: Path) -> list[str]:
    group, name = rel.parent.as_posix(), rel.stem
    if group == ".":
        return []  # the primary config itself
    if group == "experiment":
        return [f"+experiment={name}"]
    if group == "sweep":
        return [f"+sweep={name}"]
    if group == "eval" and name == "lm_eval":  # the harness tasks are the user's to name
        return [
            "eval=[lm_eval]",
            "eval.tasks.lm_eval.tasks=[sums]",
            f"eval.tasks.lm_eval.include_path={REPO}/examples/quickstart/harness",
        ]
    if group == "eval":
        return [f"eval=[{name}]"]
    if group == "hydra":
        return [f"hydra={name}"]
    if group == "method" and name in ("dpo", "kto"):  # with data of the kind they train on
        return [f"method={name}", "dataset.path=generated:arithmetic_preferences", "dataset.format=preference"]
    if group == "method" and name == "grpo":  # prompts have no held-out loss
        return ["method=grpo", "eval=[none]"]
    return [f"{group}={name}"]


def test_every_yaml_is_covered():
    assert len(ALL_YAML) >= 30
    groups = {p.parent.as_posix() for p in ALL_YAML}
    assert {"model", "dataset", "method", "sharding", "optim", "eval", "experiment", "hydra"} <= groups


@pytest.mark.parametrize("rel", ALL_YAML, ids=str)
def test_config_composes_into_valid_spec(rel, tmp_path):
    spec = compose_spec(overrides_for(rel), output_dir=str(tmp_path), env=cpu_env())
    assert isinstance(spec, RunSpec)
    assert spec.output_dir == tmp_path.resolve()


def test_experiments_hold_their_differences():
    spec = compose_spec(["+experiment=gsm8k_full_fsdp"], env=cpu_env())
    assert (spec.method.weights, spec.sharding.strategy, spec.sharding.nproc_per_node) == ("full", "fsdp", 2)
    assert spec.optim.learning_rate == 1e-5
    assert set(spec.eval.tasks) == {"loss", "gsm8k"}
    assert spec.eval.objective == "gsm8k.strict_accuracy"


def test_override_of_key_absent_from_yaml_and_alias():
    spec = compose_spec(["+experiment=quickstart", "train.seed=7", "optim.lr=5e-4"], env=cpu_env())
    assert spec.train.seed == 7
    assert spec.optim.learning_rate == 5e-4
