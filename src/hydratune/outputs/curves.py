"""Loss and learning-rate curves of a run as a PNG."""

from __future__ import annotations

from pathlib import Path


def plot_curves(log_history: list[dict], path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(e["step"], e["loss"], e.get("learning_rate")) for e in log_history if "loss" in e]
    evals = [(e["step"], e["eval_loss"]) for e in log_history if "eval_loss" in e]
    if not train:
        return None
    fig, (ax_loss, ax_lr) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax_loss.plot([s for s, _, _ in train], [l for _, l, _ in train], label="train loss")
    if evals:
        ax_loss.plot([s for s, _ in evals], [l for _, l in evals], "o-", label="eval loss")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss per supervised token")
    ax_loss.legend()
    ax_lr.plot([s for s, _, _ in train], [lr for _, _, lr in train], color="tab:orange")
    ax_lr.set_xlabel("step")
    ax_lr.set_ylabel("learning rate")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
