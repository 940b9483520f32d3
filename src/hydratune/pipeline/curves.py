"""Loss and learning-rate curves of a run as a PNG; GRPO runs add their rewards, KL and clipping."""

from __future__ import annotations

from pathlib import Path

# What a GRPO step logs beside its loss, plotted in a third panel (TRL's log names).
GRPO_EXTRAS = ("kl", "clip_ratio/region_mean")


def _series(log_history: list[dict], key: str) -> list[tuple[int, float]]:
    return [(e["step"], e[key]) for e in log_history if key in e and "loss" in e]


def plot_curves(log_history: list[dict], path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(e["step"], e["loss"], e.get("learning_rate")) for e in log_history if "loss" in e]
    evals = [(e["step"], e["eval_loss"]) for e in log_history if "eval_loss" in e]
    if not train:
        return None
    rewards = sorted({k for e in log_history for k in e if k.startswith("rewards/") and k.endswith("/mean")})
    panels = 3 if rewards else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.5))
    ax_loss, ax_lr = axes[0], axes[1]
    ax_loss.plot([s for s, _, _ in train], [loss for _, loss, _ in train], label="train loss")
    if evals:
        ax_loss.plot([s for s, _ in evals], [loss for _, loss in evals], "o-", label="eval loss")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    ax_lr.plot([s for s, _, _ in train], [lr for _, _, lr in train], color="tab:orange")
    ax_lr.set_xlabel("step")
    ax_lr.set_ylabel("learning rate")
    if rewards:
        ax = axes[2]
        for key in rewards:
            points = _series(log_history, key)
            spread = dict(_series(log_history, key.replace("/mean", "/std")))
            steps, means = [s for s, _ in points], [m for _, m in points]
            ax.plot(steps, means, label=key.removeprefix("rewards/").removesuffix("/mean"))
            if spread:
                ax.fill_between(
                    steps,
                    [m - spread.get(s, 0) for s, m in points],
                    [m + spread.get(s, 0) for s, m in points],
                    alpha=0.15,
                )
        for key in GRPO_EXTRAS:
            points = _series(log_history, key)
            if points:
                ax.plot([s for s, _ in points], [v for _, v in points], "--", label=key)
        ax.set_xlabel("step")
        ax.set_ylabel("reward (mean, band: spread)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
