"""What a sweep optimizes is a value the run measured."""

from __future__ import annotations

from hydratune.commands.cli import compose_spec
from hydratune.pipeline.run_training import objective_of

from ..conftest import cpu_env


def test_an_unmeasured_training_loss_is_no_objective_value(tmp_path):
    spec = compose_spec(["model=tiny_llama", "eval=[none]"], output_dir=str(tmp_path), env=cpu_env())
    assert objective_of(spec, {"train_loss": 1.5, "global_step": 4}) == ("train_loss", 1.5)
    assert objective_of(spec, {"train_loss": None, "global_step": 4}) == ("train_loss", None)
