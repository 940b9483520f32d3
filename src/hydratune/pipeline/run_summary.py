"""The lines every `train` ends with: what was trained, where the outputs are, how the
model scored (tuned vs base, with intervals), and the commands to run next."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hydratune.eval_table import cell
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
    """What the run changed: first the primary metric the run declared (`eval.objective`), then each
    generation task's scores of the start model (`model.name`) and of the result, with 95% intervals
    and the paired test (greedy answers: McNemar's; sampled replies: a permutation test); metrics
    measured before and after training (`<name>_start` and `<name>`) as start -> result; the rest as
    they are."""
    metrics_file = RunDirectory(run_dir).eval_metrics
    summary = json.loads(metrics_file.read_text()).get("summary", {}) if metrics_file.is_file() else {}
    objective = record.get("spec", {}).get("eval", {}).get("objective")
    scored = [(f"{task}.{metric}", sides) for task, by_metric in summary.items() for metric, sides in by_metric.items()]
    scored.sort(key=lambda item: item[0] != objective)  # stable: the primary first, the rest as scored
    lines = [f"primary metric: {objective} (eval.objective)"] if any(n == objective for n, _ in scored) else []
    lines += [line for name, sides in scored for line in gain_lines(name, sides)]
    shown_tasks = {f"{task}." for task in summary} | {f"base.{task}." for task in summary}
    flat = {k: v for k, v in record["metrics"].items() if k != "global_step" and not k.startswith(tuple(shown_tasks))}
    for name, value in flat.items():
        if name.endswith("_start") and name.removesuffix("_start") in flat:
            continue
        if f"{name}_start" in flat:
            lines.append(f"{name}: start {_number(flat[f'{name}_start'])} -> result {_number(value)}")
        else:
            lines.append(f"{name}: {_number(value)}")
    return lines


def gain_lines(name: str, sides: dict[str, Any]) -> list[str]:
    """`gsm8k.strict_accuracy: start 21.5% [16.4, 27.7] (43/200) -> result 30.0% [24.1, 36.7] (60/200)`
    and under it the change, the paired test's p and the problems only one of the two solved (for
    sampled scores: on which each did better)."""
    if "base" not in sides:
        return [f"{name}: {cell(sides['tuned']).strip()}"]
    start, result = sides["base"], sides["tuned"]
    change = f"  {100 * (result['value'] - start['value']):+.1f} points"
    if "permutation" in sides:
        paired = sides["permutation"]
        tested = (
            f"permutation p = {paired['p_value']:.3g}: {paired['better_on_tuned']} problems scored higher by the "
            f"result, {paired['better_on_base']} by the start"
        )
    else:
        paired = sides["mcnemar"]
        tested = (
            f"McNemar p = {paired['p_value']:.3g}: {paired['only_tuned_correct']} solved by the result only, "
            f"{paired['only_base_correct']} by the start only"
        )
    return [f"{name}: start {cell(start).strip()} -> result {cell(result).strip()}", f"{change}, {tested}"]


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


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
