"""The base-vs-tuned table of an evaluation, in Markdown: printed when an evaluation ends, and on
the model card. It reads the results as evaluate/run_evaluation.py writes them (metrics.json):
each metric's share correct with its 95% interval, and McNemar's p where base and tuned pair up.
"""

from __future__ import annotations

from typing import Optional


def render_table(summary: dict[str, dict], tuned: dict[str, dict], base: Optional[dict[str, dict]]) -> str:
    def cell(v: dict) -> str:
        return (
            f"{100 * v['value']:5.1f}% [{100 * v['ci95'][0]:.1f}, {100 * v['ci95'][1]:.1f}] ({v['correct']}/{v['n']})"
        )

    lines = ["| task | metric | base | tuned | McNemar p |", "|---|---|---|---|---|"]
    for name, metrics in summary.items():
        for metric, entry in metrics.items():
            base_cell = cell(entry["base"]) if "base" in entry else "-"
            p = f"{entry['mcnemar']['p_value']:.3g}" if "mcnemar" in entry else "-"
            lines.append(f"| {name} | {metric} | {base_cell} | {cell(entry['tuned'])} | {p} |")
    speeds = [
        f"{name}: tuned {r['problems_per_second']:.2f} problems/s"
        + (f", base {base[name]['problems_per_second']:.2f}" if base and name in base else "")
        for name, r in tuned.items()
    ]
    return "\n".join(lines + ["", "; ".join(speeds)])
