"""A run's curves as one PNG: loss and learning rate; GRPO adds its rewards with KL, the share of
tokens whose ratio was clipped, and its groups (the share without reward spread; with
method.group_filter=spread the prompts sampled per group kept); DPO and KTO add the implicit
rewards of the chosen and rejected replies, their margin, and the share of pairs ranked right.
Each panel is a series per training step, with the held-out evaluations as points of the same
colour."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

# What a GRPO step logs beside its loss, drawn dashed with its rewards (TRL's log names).
GRPO_EXTRAS = ("kl",)
# TRL's shares of completion tokens whose policy ratio was clipped: below 1 - epsilon with a
# negative advantage, above 1 + epsilon_high with a positive one, and either.
GRPO_CLIPPING = {"clip_ratio/low_mean": "low", "clip_ratio/high_mean": "high", "clip_ratio/region_mean": "either"}
# The groups of a step: without the filter TRL's share of groups whose rewards are all equal; with
# method.group_filter=spread the share among all groups sampled, among those trained on, and the
# prompts sampled per group kept (hydratune.training.group_filter).
GRPO_GROUPS = {
    "groups/no_spread": "no spread (sampled)",
    "groups/no_spread_trained": "no spread (trained on)",
    "groups/prompts_per_kept_group": "prompts per kept group",
}
# What TRL's preference trainers log per step (and with an `eval_` prefix per evaluation).
PREFERENCE_REWARDS = ("rewards/chosen", "rewards/rejected", "rewards/margins")
PREFERENCE_ACCURACY = "rewards/accuracies"

Points = list[tuple[int, float]]


@dataclass
class Series:
    label: str
    points: Points
    held_out: Points = field(default_factory=list)  # drawn as points
    spread: dict[int, float] = field(default_factory=dict)  # drawn as a band around the line
    dashed: bool = False


@dataclass
class Panel:
    ylabel: str
    series: list[Series]
    ylim: Optional[tuple[float, float]] = None
    zero_line: bool = False


def _series(log_history: list[dict], key: str) -> Points:
    """A key's values at the training steps (the entries that carry the training loss)."""
    return [(e["step"], e[key]) for e in log_history if key in e and "loss" in e]


def _held_out(log_history: list[dict], key: str) -> Points:
    return [(e["step"], e[f"eval_{key}"]) for e in log_history if f"eval_{key}" in e]


def panels(log_history: list[dict]) -> list[Panel]:
    """What the PNG shows, panel by panel; nothing when no training step was logged."""
    if not _series(log_history, "loss"):
        return []
    out = [
        Panel("loss", [Series("loss", _series(log_history, "loss"), _held_out(log_history, "loss"))]),
        Panel("learning rate", [Series("learning rate", _series(log_history, "learning_rate"))]),
    ]
    out += _grpo_panels(log_history)
    preference = [
        Series(key.removeprefix("rewards/"), _series(log_history, key), _held_out(log_history, key))
        for key in PREFERENCE_REWARDS
        if _series(log_history, key)
    ]
    if preference:
        out.append(Panel("implicit reward (beta * log-ratio)", preference, zero_line=True))
    accuracy = _series(log_history, PREFERENCE_ACCURACY)
    if accuracy:
        ranked = Series("pairs ranked right", accuracy, _held_out(log_history, PREFERENCE_ACCURACY))
        out.append(Panel("reward accuracy", [ranked], ylim=(-0.05, 1.05)))
    return out


def _grpo_panels(log_history: list[dict]) -> list[Panel]:
    """Rewards (each function's and, with several, their weighted sum), clipping, groups."""
    rewards = sorted({k for e in log_history for k in e if k.startswith("rewards/") and k.endswith("/mean")})
    if not rewards:
        return []
    series = [
        Series(
            key.removeprefix("rewards/").removesuffix("/mean"),
            _series(log_history, key),
            spread=dict(_series(log_history, key.replace("/mean", "/std"))),
        )
        for key in rewards
    ]
    if len(rewards) > 1 and _series(log_history, "reward"):
        series.append(
            Series(
                "reward (weighted sum)", _series(log_history, "reward"), spread=dict(_series(log_history, "reward_std"))
            )
        )
    extras = [Series(key, _series(log_history, key), dashed=True) for key in GRPO_EXTRAS if _series(log_history, key)]
    out = [Panel("reward (mean, band: spread)", series + extras)]
    clipped = [
        Series(label, _series(log_history, key)) for key, label in GRPO_CLIPPING.items() if _series(log_history, key)
    ]
    if clipped:
        out.append(Panel("tokens clipped (share)", clipped))
    groups = [
        Series(label, _series(log_history, key)) for key, label in GRPO_GROUPS.items() if _series(log_history, key)
    ]
    if not groups and _series(log_history, "frac_reward_zero_std"):
        groups = [Series("no spread", _series(log_history, "frac_reward_zero_std"))]
    if groups:
        out.append(Panel("groups (share; prompts per kept group)", groups))
    return out


def plot_curves(log_history: list[dict], path: Path) -> Path | None:
    shown = panels(log_history)
    if not shown:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(shown), figsize=(5 * len(shown), 3.5))
    for ax, panel in zip(axes, shown):
        for s in panel.series:
            steps = [step for step, _ in s.points]
            values = [value for _, value in s.points]
            (line,) = ax.plot(steps, values, "--" if s.dashed else "-", label=s.label)
            if s.spread:
                low = [v - s.spread.get(step, 0) for step, v in s.points]
                high = [v + s.spread.get(step, 0) for step, v in s.points]
                ax.fill_between(steps, low, high, alpha=0.15, color=line.get_color())
            if s.held_out:
                held_steps, held_values = zip(*s.held_out)
                ax.plot(held_steps, held_values, "o", color=line.get_color(), label=f"{s.label} (held out)")
        if panel.zero_line:
            ax.axhline(0, color="grey", linewidth=0.5)
        if panel.ylim:
            ax.set_ylim(*panel.ylim)
        ax.set_xlabel("step")
        ax.set_ylabel(panel.ylabel)
        if len(panel.series) > 1 or panel.series[0].held_out:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
