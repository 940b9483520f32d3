"""curves.png: what each kind of run draws, read from the panels the PNG is made of."""

from __future__ import annotations

from hydratune.pipeline.curves import panels, plot_curves


def dpo_log() -> list[dict]:
    """The shape of TRL's DPO log: an evaluation before training, two steps, one at the end."""
    held_out = {"eval_loss": 0.69, "eval_rewards/margins": 0.0, "eval_rewards/accuracies": 0.0}
    return [
        {**held_out, "step": 0},
        {
            "loss": 0.7,
            "learning_rate": 1e-4,
            "rewards/chosen": 0.1,
            "rewards/rejected": -0.2,
            "rewards/margins": 0.3,
            "rewards/accuracies": 0.5,
            "step": 1,
        },
        {
            "loss": 0.5,
            "learning_rate": 5e-5,
            "rewards/chosen": 0.2,
            "rewards/rejected": -0.9,
            "rewards/margins": 1.1,
            "rewards/accuracies": 1.0,
            "step": 2,
        },
        {"train_runtime": 3.0, "train_loss": 0.6, "step": 2},
        {"eval_loss": 0.4, "eval_rewards/margins": 0.9, "eval_rewards/accuracies": 0.75, "step": 2},
    ]


def test_dpo_curves_show_margin_and_accuracy_per_step_with_the_held_out_points(tmp_path):
    shown = {p.ylabel: {s.label: s for s in p.series} for p in panels(dpo_log())}
    assert list(shown) == ["loss", "learning rate", "implicit reward (beta * log-ratio)", "reward accuracy"]
    assert shown["loss"]["loss"].points == [(1, 0.7), (2, 0.5)]
    assert shown["loss"]["loss"].held_out == [(0, 0.69), (2, 0.4)]
    rewards = shown["implicit reward (beta * log-ratio)"]
    assert list(rewards) == ["chosen", "rejected", "margins"]
    assert rewards["margins"].points == [(1, 0.3), (2, 1.1)] and rewards["margins"].held_out == [(0, 0.0), (2, 0.9)]
    ranked = shown["reward accuracy"]["pairs ranked right"]
    assert ranked.points == [(1, 0.5), (2, 1.0)] and ranked.held_out == [(0, 0.0), (2, 0.75)]
    assert plot_curves(dpo_log(), tmp_path / "curves.png").stat().st_size > 1000


def test_grpo_curves_show_each_reward_with_its_spread():
    log = [
        {
            "loss": 0.01,
            "learning_rate": 1e-4,
            "rewards/correct/mean": 0.25,
            "rewards/correct/std": 0.4,
            "kl": 0.0,
            "step": 1,
        },
        {
            "loss": 0.02,
            "learning_rate": 1e-4,
            "rewards/correct/mean": 0.5,
            "rewards/correct/std": 0.5,
            "kl": 0.01,
            "step": 2,
        },
    ]
    (reward_panel,) = [p for p in panels(log) if p.ylabel.startswith("reward")]
    correct, kl = reward_panel.series
    assert correct.label == "correct" and correct.points == [(1, 0.25), (2, 0.5)] and correct.spread == {1: 0.4, 2: 0.5}
    assert kl.label == "kl" and kl.dashed


def grpo_step(step: int, no_spread: float, prompts: float, clipped: float, **more) -> dict:
    """A step of TRL's GRPO log with two rewards and hydratune's group filter."""
    return {
        "loss": 0.01,
        "learning_rate": 1e-4,
        "rewards/correct/mean": 0.5,
        "rewards/correct/std": 0.5,
        "rewards/format/mean": 0.9,
        "rewards/format/std": 0.1,
        "reward": 1.4,
        "reward_std": 0.6,
        "kl": 0.01,
        "clip_ratio/low_mean": clipped / 2,
        "clip_ratio/high_mean": clipped / 2,
        "clip_ratio/region_mean": clipped,
        "frac_reward_zero_std": no_spread,
        "groups/no_spread": no_spread,
        "groups/no_spread_trained": 0.0,
        "groups/prompts_per_kept_group": prompts,
        "step": step,
        **more,
    }


def test_grpo_curves_show_the_weighted_reward_clipping_and_the_groups(tmp_path):
    log = [grpo_step(1, 0.5, 2.0, 0.02), grpo_step(2, 0.25, 1.5, 0.04)]
    shown = {p.ylabel: {s.label: s for s in p.series} for p in panels(log)}
    assert list(shown) == [
        "loss",
        "learning rate",
        "reward (mean, band: spread)",
        "tokens clipped (share)",
        "groups (share; prompts per kept group)",
    ]
    rewards = shown["reward (mean, band: spread)"]
    assert list(rewards) == ["correct", "format", "reward (weighted sum)", "kl"]
    assert rewards["reward (weighted sum)"].points == [(1, 1.4), (2, 1.4)]
    assert rewards["reward (weighted sum)"].spread == {1: 0.6, 2: 0.6}
    clipped = shown["tokens clipped (share)"]
    assert list(clipped) == ["low", "high", "either"] and clipped["either"].points == [(1, 0.02), (2, 0.04)]
    groups = shown["groups (share; prompts per kept group)"]
    assert list(groups) == ["no spread (sampled)", "no spread (trained on)", "prompts per kept group"]
    assert groups["no spread (sampled)"].points == [(1, 0.5), (2, 0.25)]
    assert groups["prompts per kept group"].points == [(1, 2.0), (2, 1.5)]
    assert plot_curves(log, tmp_path / "curves.png").stat().st_size > 1000


def test_grpo_without_the_filter_draws_trls_share_of_groups_without_spread():
    log = [grpo_step(1, 0.5, 0, 0)]
    for key in ("groups/no_spread", "groups/no_spread_trained", "groups/prompts_per_kept_group"):
        del log[0][key]
    (groups,) = [p for p in panels(log) if p.ylabel.startswith("groups")]
    assert [(s.label, s.points) for s in groups.series] == [("no spread", [(1, 0.5)])]


def test_a_run_without_training_steps_draws_nothing(tmp_path):
    assert panels([{"eval_loss": 1.0, "step": 0}]) == []
    assert plot_curves([{"eval_loss": 1.0, "step": 0}], tmp_path / "curves.png") is None
