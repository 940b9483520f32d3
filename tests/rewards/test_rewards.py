"""The shipped rewards on fixed completions, and how GRPO's trainer calls them."""

from __future__ import annotations

import pytest

from hydratune.rewards import REWARDS, for_trainer, resolve_reward

GOLD = "Ben pays 4 * 3 = <<4*3=12>>12 dollars.\n#### 12"
COMPLETIONS = [
    "4 * 3 = 12 dollars.\n#### 12",  # right, in format
    "4 * 3 = 12 dollars.\n#### $12.00",  # right, GSM8K's number normalization
    "#### 12\nI hope this helps!",  # right, but text after the answer line
    "It costs 12 dollars.",  # right number, no answer line
    "4 * 3 = 13 dollars.\n#### 13",  # wrong, in format
    "",  # nothing
]


@pytest.mark.parametrize(
    "name,expected",
    [
        ("gsm8k_correct", [1, 1, 1, 0, 0, 0]),
        ("gsm8k_correct_flexible", [1, 1, 1, 1, 0, 0]),
        ("gsm8k_format", [1, 1, 0.5, 0, 1, 0]),
    ],
)
def test_rewards_on_fixed_completions(name, expected):
    assert REWARDS[name](COMPLETIONS, answer=[GOLD] * len(COMPLETIONS)) == expected


@pytest.mark.parametrize("name", ["gsm8k_correct", "gsm8k_correct_flexible"])
def test_a_bare_number_is_a_reference(name):
    completions = ["so 4 * 3 = 12\n#### 12", "#### 13", "#### \u22127", "#### -$7"]
    assert REWARDS[name](completions, answer=["12", "12", "-7", "\u22127"]) == [1, 0, 1, 1]


def test_references_no_reward_can_read_are_found():
    from hydratune.rewards import unreadable_references

    answers = ["#### 12", "12", "twelve", "", "$3"]
    assert unreadable_references(["gsm8k_correct", "gsm8k_format"], answers) == [2, 3]
    assert unreadable_references(["gsm8k_format", "length_penalty"], answers) == []  # they do not read it


def test_length_penalty_prefers_shorter():
    short, long = REWARDS["length_penalty"](["#### 12", "x" * 500 + "\n#### 12"])
    assert short > long and long == pytest.approx(-0.508)


def test_trainer_form_takes_conversational_completions_and_columns():
    """TRL passes prompts, completions as [{role, content}] and every dataset column by name."""
    reward = for_trainer("gsm8k_correct")
    assert reward.__name__ == "gsm8k_correct"  # logged as rewards/gsm8k_correct/mean
    got = reward(
        prompts=[[{"role": "user", "content": "q"}]] * 2,
        completions=[[{"role": "assistant", "content": "#### 12"}], [{"role": "assistant", "content": "#### 7"}]],
        completion_ids=[[1], [2]],
        answer=[GOLD, GOLD],
        prompt_tokens=[5, 5],
        trainer_state=None,
    )
    assert got == [1.0, 0.0]


def test_custom_rewards_resolve_by_module_and_function():
    assert resolve_reward("tests.rewards.test_rewards:always_half") is always_half
    assert for_trainer("tests.rewards.test_rewards:always_half")(prompts=["p"], completions=["c"]).__class__ is list


def always_half(completions, **_):
    return [0.5] * len(completions)
