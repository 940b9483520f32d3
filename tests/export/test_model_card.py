"""The model card's results section."""

from __future__ import annotations

from hydratune.export.model_card import _eval_lines


def test_a_loss_the_run_could_not_measure_is_left_out(tmp_path):
    record = {"metrics": {"train_loss": None, "loss.eval_loss": 1.25, "global_step": 4}}
    assert _eval_lines(tmp_path, record)[-1] == "| loss.eval_loss | 1.25 |"
    assert _eval_lines(tmp_path, {"metrics": {"train_loss": None, "global_step": 4}}) == ["Not evaluated."]
