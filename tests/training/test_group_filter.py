"""method.group_filter=spread (DAPO's dynamic sampling): only groups whose rewards differ are trained on."""

from __future__ import annotations

import json
import math

import pytest
import torch

from hydratune.training.group_filter import GroupFilter, Selection, combine_metric, group_spread, select_groups

from .runs import losses, record, train
from .test_post_training import GRPO, GRPO_FILTERED, assert_trained_on_spread


def test_spread_is_a_group_whose_rewards_differ():
    nan = float("nan")
    rewards = torch.tensor([1.0, 1.0, 0.0, 1.0, nan, 0.5, nan, nan, 0.2, 0.2])
    assert group_spread(rewards, 2).tolist() == [False, True, False, False, False]
    assert group_spread(torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0, 0.0]), 3).tolist() == [True, False]


def test_selection_keeps_groups_with_spread_in_sampling_order():
    chosen = select_groups([[False, True, False, True], [True, True, False, True]], 4)
    assert chosen == Selection([(0, 1), (0, 3), (1, 0), (1, 1)], with_spread=4)


def test_selection_fills_a_short_batch_with_groups_without_spread():
    chosen = select_groups([[False, True, False], [False, False, True]], 3)
    assert chosen == Selection([(0, 1), (1, 2), (0, 0)], with_spread=2)
    assert select_groups([[False, False]], 2) == Selection([(0, 0), (0, 1)], with_spread=0)
    with pytest.raises(ValueError):
        select_groups([[True]], 2)


def test_a_metric_logged_per_round_becomes_one_value_over_the_rounds():
    assert combine_metric("reward", [0.0, 1.0]) == 0.5
    assert combine_metric("completions/max_length", [3.0, 7.0]) == 7.0
    assert combine_metric("completions/min_terminated_length", [3.0, 7.0]) == 3.0
    assert combine_metric("rewards/r/std", [float("nan"), 0.25]) == 0.25
    assert math.isnan(combine_metric("reward", [float("nan")]))


class Assembler(GroupFilter):
    """The filter's assembly on a one-process accelerator, with TRL's output shapes."""

    num_generations = 2

    def __init__(self):
        from types import SimpleNamespace

        from accelerate import Accelerator

        self.accelerator = Accelerator(cpu=True)
        self._tokenizer = SimpleNamespace(pad_token_id=9)


def round_output(prompt_width: int, completion_width: int, first_row: int) -> dict:
    """Four rows (two groups of 2); row i's values are first_row + i, padding as TRL pads."""
    ids = torch.arange(first_row, first_row + 4).unsqueeze(1)
    return {
        "prompt_ids": ids.repeat(1, prompt_width),
        "prompt_mask": torch.ones(4, prompt_width, dtype=torch.long),
        "completion_ids": ids.repeat(1, completion_width),
        "completion_mask": torch.ones(4, completion_width, dtype=torch.long),
        "old_per_token_logps": ids.float().repeat(1, completion_width),
        "advantages": ids.float().squeeze(1),
        "num_items_in_batch": torch.tensor(4 * completion_width),
    }


def test_rounds_of_different_widths_assemble_into_one_padded_batch():
    outputs = [round_output(2, 3, 0), round_output(4, 1, 10)]
    batch = Assembler()._assemble(outputs, Selection([(0, 1), (1, 0)], with_spread=2), local_rows=4)
    assert batch["advantages"].tolist() == [2, 3, 10, 11]
    assert batch["prompt_ids"].tolist() == [[9, 9, 2, 2], [9, 9, 3, 3], [10] * 4, [11] * 4]  # left-padded
    assert batch["prompt_mask"].tolist() == [[0, 0, 1, 1]] * 2 + [[1] * 4] * 2
    assert batch["completion_ids"].tolist() == [[2] * 3, [3] * 3, [10, 9, 9], [11, 9, 9]]  # right-padded
    assert batch["completion_mask"].tolist() == [[1] * 3] * 2 + [[1, 0, 0]] * 2
    assert batch["old_per_token_logps"].tolist() == [[2.0] * 3, [3.0] * 3, [10.0, 0, 0], [11.0, 0, 0]]
    assert batch["num_items_in_batch"].item() == 8  # the kept batch's completion tokens


def constant(completions, **_):
    """The same reward for every completion: no group ever has spread."""
    return [1.0] * len(completions)


FILTER = [*(o for o in GRPO if not o.startswith("method.rewards=")), "method.group_filter=spread"]


def grpo_steps(run_dir) -> list[dict]:
    return [e for e in record(run_dir)["log_history"] if "loss" in e]


@pytest.mark.slow
def test_the_filter_never_stalls_when_no_group_has_spread(tmp_path):
    run = tmp_path / "run"
    out = train(
        run,
        *FILTER,
        "method.rewards=[tests.training.test_group_filter:constant]",
        "method.group_filter_max_rounds=2",
        "train.max_steps=2",
    )
    assert len(losses(run)) == 2
    for step in grpo_steps(run):
        assert step["groups/no_spread"] == 1.0 and step["frac_reward_zero_std"] == 1.0
        assert step["groups/rounds"] == 2.0 and step["groups/no_spread_trained"] == 1.0
        assert step["groups/prompts_per_kept_group"] == 2.0  # both rounds' prompts, and none kept
    assert "after 2 sampling rounds (2 prompts) only 0 of the batch's 1 groups" in out.stdout + out.stderr
    assert "Raise method.group_filter_max_rounds or method.num_generations" in out.stdout + out.stderr


# Loaded by the training process at start (sitecustomize): records the advantages of each batch
# the group filter hands to TRL's training steps, one JSON line per sampling.
RECORD_BATCHES = """
import json, os
from hydratune.training import group_filter

sample = group_filter.GroupFilter._generate_and_score_completions

def recorded(self, inputs):
    out = sample(self, inputs)
    if self.model.training:
        with open(os.environ["GROUP_FILTER_BATCHES"], "a") as f:
            f.write(json.dumps(out["advantages"].tolist()) + "\\n")
    return out

group_filter.GroupFilter._generate_and_score_completions = recorded
"""


@pytest.mark.slow
def test_the_filter_trains_only_on_groups_with_spread(tmp_path):
    """One group of 4 a step; about half the prompts give no spread and are sampled over: every
    batch trained on holds a group whose advantages are not all zero."""
    import os

    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(RECORD_BATCHES)
    batches = tmp_path / "batches.jsonl"
    path = os.pathsep.join(p for p in (str(tmp_path / "hook"), os.environ.get("PYTHONPATH")) if p)
    run = tmp_path / "run"
    env = {"PYTHONPATH": path, "GROUP_FILTER_BATCHES": str(batches)}
    train(run, *GRPO_FILTERED, "method.group_filter_max_rounds=8", "train.max_steps=4", env=env)
    assert len(losses(run)) == 4
    assert_trained_on_spread(run)
    for step in grpo_steps(run):  # one group needed: every round before the last had none with spread
        rounds = step["groups/rounds"]
        assert step["groups/no_spread"] == pytest.approx((rounds - 1) / rounds)
    trained = [json.loads(line) for line in batches.read_text().splitlines()]
    assert len(trained) == 4 and all(len(advantages) == 4 for advantages in trained)
    assert all(any(abs(a) > 1e-3 for a in advantages) for advantages in trained), trained


def test_outputs_the_filter_cannot_pad_are_refused_with_the_setting_to_change():
    from hydratune.config.problems import ConfigError

    output = round_output(3, 2, 0)
    output["pixel_values"] = torch.zeros(4, 3)
    with pytest.raises(ConfigError, match="pixel_values.*set method.group_filter=none"):
        Assembler()._assemble([output], Selection([(0, 0), (0, 1)], with_spread=2), 4)
