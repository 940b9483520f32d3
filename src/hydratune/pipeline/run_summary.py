"""The lines every `train` ends with: what was trained, where the outputs are, how the
model scored (tuned vs base, with intervals), and the commands to run next."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hydratune.run_layout import RunDirectory

# The outputs the summary points to: a RunDirectory path by name, and what it holds.
OUTPUTS = {
    "adapter": "the trained adapter (PEFT)",
    "merged": "full weights: transformers and vLLM load this",
    "eval": "metrics.json and every prediction",
    "record": "spec, plan, memory, metrics and the log",
    "curves": "loss and learning-rate curves",
    "tensorboard": "tensorboard --logdir here",
}


def shown(path: Path) -> str:
    """A path as the user would type it: relative when it lies under the working directory."""
    try:
        return os.path.relpath(path) if path.resolve().is_relative_to(Path.cwd().resolve()) else str(path)
    except ValueError:
        return str(path)


def trained_line(record: dict[str, Any]) -> str:
    spec = record["spec"]
    method = spec["method"]
    weights = method["weights"]
    if weights in ("lora", "qlora"):
        weights += f" (rank {method['lora']['rank']})"
    losses = [e["loss"] for e in record["log_history"] if "loss" in e]
    tokens = next((e["tokens_seen"] for e in reversed(record["log_history"]) if "tokens_seen" in e), None)
    parts = [
        f"{method['name']} with {weights} weights on {spec['model']['name']}",
        f"{record['metrics']['global_step']} steps",
    ]
    if tokens:
        parts.append(f"{int(tokens):,} tokens")
    if losses:
        parts.append(f"loss {losses[0]:.3g} -> {losses[-1]:.3g}")
    return ", ".join(parts)


def metric_lines(record: dict[str, Any], run_dir: Path) -> list[str]:
    """Generation tasks as tuned vs base with 95% intervals and McNemar's p; else the flat metrics."""
    metrics_file = RunDirectory(run_dir).eval_metrics
    summary = json.loads(metrics_file.read_text()).get("summary", {}) if metrics_file.is_file() else {}
    lines = []
    for task, by_metric in summary.items():
        for metric, sides in by_metric.items():
            cells = [f"{side} {_share(sides[side])}" for side in ("base", "tuned") if side in sides]
            if "mcnemar" in sides:
                cells.append(f"paired p = {sides['mcnemar']['p_value']:.3g}")
            lines.append(f"{task}.{metric}: " + "   ".join(cells))
    shown_tasks = {f"{task}." for task in summary} | {f"base.{task}." for task in summary}
    for name, value in record["metrics"].items():
        if name != "global_step" and not any(name.startswith(prefix) for prefix in shown_tasks):
            lines.append(f"{name}: {value:.4g}" if isinstance(value, float) else f"{name}: {value}")
    return lines


def _share(m: dict[str, Any]) -> str:
    low, high = m["ci95"]
    return f"{100 * m['value']:.1f}% [{100 * low:.1f}, {100 * high:.1f}] ({m['correct']}/{m['n']})"


def run_summary(record: dict[str, Any], run_dir: Path) -> str:
    where, layout = shown(run_dir), RunDirectory(run_dir)
    outputs = [(getattr(layout, name), what) for name, what in OUTPUTS.items()]
    lines = [
        "",
        "hydratune: run complete",
        f"  trained   {trained_line(record)}",
        f"  took      {record['wall_seconds']['total']:.0f} s (train {record['wall_seconds']['train']:.0f} s)",
        f"  outputs   {where}/",
    ]
    for path, what in outputs:
        if path.exists():
            lines.append(f"              {path.name + ('/' if path.is_dir() else ''):<13} {what}")
    metrics = metric_lines(record, run_dir)
    if metrics:
        lines += ["  metrics   " + metrics[0], *("            " + line for line in metrics[1:])]
    commands = [(f"hydratune-chat {where}", "talk to merged/")]
    if layout.eval_metrics.is_file():  # the run has generation tasks to score again
        commands.append((f"hydratune-eval {where} --max-samples 200", "score it on more problems"))
    if layout.adapter.is_dir():
        commands.append((f"hydratune-export {where}", "rebuild merged/ from the adapter"))
    commands.append((f"hydratune-export {where} --push-to-hub OWNER/NAME", "publish merged/ with a model card"))
    width = max(len(command) for command, _ in commands)
    lines += [
        ("  next      " if i == 0 else "            ") + f"{command:<{width}}   # {why}"
        for i, (command, why) in enumerate(commands)
    ]
    return "\n".join(lines) + "\n"
