"""A run's recorded training loss is the mean over all of its steps, however it was resumed."""

from __future__ import annotations

import pytest

from hydratune.training.run_loss import run_training_loss

# logging_steps=2 on a 7-step run: steps 1-2, 3-4, 5-6 logged; the end-of-training entry has no "loss"
HISTORY = [
    {"loss": 4.0, "step": 2},
    {"eval_loss": 9.0, "step": 2},
    {"loss": 2.0, "step": 4},
    {"loss": 1.0, "step": 6},
    {"train_loss": 0.0, "step": 7},
]


def test_a_run_not_resumed_keeps_the_trainers_mean():
    assert run_training_loss(HISTORY, 0, 1.9, 7) == 1.9


def test_a_resumed_run_adds_the_steps_logged_before_its_checkpoint():
    # checkpoint at step 4: steps 1-4 from the log (4.0 twice, 2.0 twice), 3 steps since at 1.0
    assert run_training_loss(HISTORY, 4, 1.0, 3) == pytest.approx((4 * 2 + 2 * 2 + 1 * 3) / 7)
    # checkpoint at step 5: step 5 was never logged (it trained after the log at 4): left out
    assert run_training_loss(HISTORY, 5, 1.0, 2) == pytest.approx((4 * 2 + 2 * 2 + 1 * 2) / 6)


def test_a_run_resumed_at_its_budget_keeps_its_loss_not_zero():
    assert run_training_loss(HISTORY, 6, 0.0, 0) == pytest.approx((4 * 2 + 2 * 2 + 1 * 2) / 6)
    assert run_training_loss([], 6, 0.0, 0) is None  # nothing was logged: unknown, not 0.0
