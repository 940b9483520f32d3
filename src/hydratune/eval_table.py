"""The base-vs-tuned table of an evaluation, in Markdown: printed when an evaluation ends, and on
the model card. It reads the results as evaluate/run_evaluation.py writes them (metrics.json):
each metric's share correct (or, for sampled replies, its mean over the problems) with its 95%
interval, and the paired test's p where base and tuned pair up (McNemar's, or a permutation test
for sampled scores).
"""

from __future__ import annotations

from typing import Optional


def cell(v: dict) -> str:
    """`21.5% [16.4, 27.7] (43/200)`; a mean of per-problem shares: `24.1% [20.3, 27.9] (mean of 200)`."""
    counted = f"mean of {v['n']}" if v.get("kind") == "mean" else f"{v['correct']}/{v['n']}"
    return f"{100 * v['value']:5.1f}% [{100 * v['ci95'][0]:.1f}, {100 * v['ci95'][1]:.1f}] ({counted})"


def paired_p(entry: dict) -> str:
    """The paired test's p with its name, or `-` where base and tuned do not pair up."""
    if "mcnemar" in entry:
        return f"{entry['mcnemar']['p_value']:.3g} (McNemar)"
    if "permutation" in entry:
        return f"{entry['permutation']['p_value']:.3g} (permutation)"
    return "-"


def render_table(summary: dict[str, dict], tuned: dict[str, dict], base: Optional[dict[str, dict]]) -> str:
    lines = ["| task | metric | base | tuned | paired p |", "|---|---|---|---|---|"]
    for name, metrics in summary.items():
        for metric, entry in metrics.items():
            base_cell = cell(entry["base"]) if "base" in entry else "-"
            lines.append(f"| {name} | {metric} | {base_cell} | {cell(entry['tuned'])} | {paired_p(entry)} |")
    speeds = [
        f"{name}: tuned {r['problems_per_second']:.2f} problems/s"
        + (f", base {base[name]['problems_per_second']:.2f}" if base and name in base else "")
        for name, r in tuned.items()
    ]
    return "\n".join(lines + ["", "; ".join(speeds)])
