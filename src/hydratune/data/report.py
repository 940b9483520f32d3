"""The inspection report of a preprocessed dataset: counts, tokens, lengths, packing, examples.

Written as report.json and report.md beside the shards, and printed by `preprocess`
with trained tokens in green on a terminal ([[marked]] elsewhere).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from hydratune.atomic_dir import write_json_atomic
from hydratune.data.tokenize_examples import IGNORE_INDEX

EXAMPLES_SHOWN = 3
HISTOGRAM_BINS = 16


def _segments(tokenizer, input_ids, labels) -> list[list[Any]]:
    """[[text, trained], ...] runs of a sequence, for coloured or marked display."""
    runs: list[list[Any]] = []
    current: list[int] = []
    trained = None
    for tok, label in zip(input_ids, labels):
        is_trained = label != IGNORE_INDEX
        if is_trained != trained and current:
            runs.append([tokenizer.decode(current), bool(trained)])
            current = []
        trained = is_trained
        current.append(tok)
    if current:
        runs.append([tokenizer.decode(current), bool(trained)])
    return runs


def _histogram(lengths, max_length: int) -> list[dict[str, int]]:
    width = max(1, -(-max_length // HISTOGRAM_BINS))
    counts = [0] * HISTOGRAM_BINS
    for n in lengths:
        counts[min((int(n) - 1) // width, HISTOGRAM_BINS - 1)] += 1
    return [{"from": i * width + 1, "to": min((i + 1) * width, max_length), "count": c} for i, c in enumerate(counts)]


def build_report(
    *, ds, tokenizer, stats, lengths, supervised, examples, packing, realized_shares, seconds
) -> dict[str, Any]:
    """`lengths`: the token count of each train and eval sequence; `supervised`: trained tokens
    in train; `examples`: the first train sequences as (input_ids, labels)."""
    train, held = lengths.get("train", ()), lengths.get("eval", ())
    tokens = int(sum(train))
    weights = [ds.weight, *(m.weight for m in ds.mix)]
    return {
        "sources": {split: [dataclasses.asdict(s) for s in per] for split, per in stats.items()},
        "train": {
            "sequences": len(train),
            "tokens": tokens,
            "supervised_tokens": supervised,
            "supervised_fraction": supervised / tokens if tokens else 0.0,
            "length_histogram": _histogram(train, ds.max_length),
        },
        "eval": {"sequences": len(held), "tokens": int(sum(held))},
        "packing": packing,
        "mixture": [
            {"source": st.name, "weight_share": w / sum(weights), "realized_token_share": share}
            for st, w, share in zip(stats["train"], weights, realized_shares)
        ],
        "examples": [_segments(tokenizer, ids.tolist(), labels.tolist()) for ids, labels in examples],
        "build_seconds": seconds,
    }


def _lengths(values: list[int]) -> dict[str, float]:
    if not values:
        return {"min": 0, "mean": 0.0, "max": 0}
    return {"min": min(values), "mean": sum(values) / len(values), "max": max(values)}


# The token-id columns of each post-training row kind, shown as lengths.
LENGTH_COLUMNS = {
    "pair": ("prompt_ids", "chosen_ids", "rejected_ids"),
    "unpaired": ("prompt_ids", "completion_ids"),
    "prompt": (),
}


def _post_training_example(tokenizer, kind: str, row: dict[str, Any]) -> dict[str, list[list[Any]]]:
    """One row rendered as segments: the prompt never trained, each reply trained."""
    if kind == "prompt":
        return {
            "prompt": [
                [tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True), False]
            ],
            "answer (given to the rewards)": [[row["answer"], False]],
        }
    prompt = [tokenizer.decode(row["prompt_ids"]), False]
    replies = [c for c in LENGTH_COLUMNS[kind] if c != "prompt_ids"]
    shown = {c.removesuffix("_ids"): [prompt, [tokenizer.decode(row[c]), True]] for c in replies}
    if kind == "unpaired":
        shown = {("desirable" if row["label"] else "undesirable") + " completion": shown["completion"]}
    return shown


def post_training_report(*, kind: str, ds, tokenizer, stats, rows, seconds) -> dict[str, Any]:
    train = rows["train"]
    lengths = {c.removesuffix("_ids"): _lengths([len(r[c]) for r in train]) for c in LENGTH_COLUMNS[kind]}
    if kind == "prompt":
        lengths["prompt"] = _lengths([r["prompt_tokens"] for r in train])
    report = {
        "kind": kind,
        "sources": {split: [dataclasses.asdict(s) for s in per] for split, per in stats.items()},
        "train": {"rows": len(train), "lengths": lengths},
        "eval": {"rows": len(rows.get("eval") or [])},
        "packing": "not packed: each row is one prompt with its replies"
        if kind != "prompt"
        else "not packed: prompts are sampled from",
        "examples": [_post_training_example(tokenizer, kind, r) for r in train[:1]],
        "build_seconds": seconds,
    }
    if kind == "unpaired":
        report["train"]["desirable"] = sum(bool(r["label"]) for r in train)
    return report


def _render_post_training(report: dict[str, Any], *, color: bool) -> list[str]:
    t = report["train"]
    lines = ["", "## Rows", "", f"- train rows: {t['rows']:,}; eval rows: {report['eval']['rows']:,}"]
    if "desirable" in t:
        lines.append(f"- desirable: {t['desirable']:,}; undesirable: {t['rows'] - t['desirable']:,}")
    lines += [
        f"- {report['packing']}",
        "",
        "## Lengths (tokens, train)",
        "",
        "| part | min | mean | max |",
        "|---|---|---|---|",
    ]
    lines += [f"| {part} | {v['min']} | {v['mean']:.1f} | {v['max']} |" for part, v in t["lengths"].items()]
    lines += ["", "## Example (trained tokens " + ("in green" if color else "in [[double brackets]]") + ")", ""]
    for example in report["examples"]:
        for part, segments in example.items():
            lines += [f"### {part}", "", "```", render_example(segments, color=color), "```", ""]
    return lines


def render_example(segments: list[list[Any]], *, color: bool) -> str:
    if color:
        return "".join(f"\x1b[1;32m{text}\x1b[0m" if trained else f"\x1b[2m{text}\x1b[0m" for text, trained in segments)
    return "".join(f"[[{text}]]" if trained else text for text, trained in segments)


def render_report(report: dict[str, Any], *, color: bool = False) -> str:
    t = report["train"]
    lines = [
        "## Sources",
        "",
        "| split | source | read | kept | truncated | dropped | empty turns masked |",
        "|---|---|---|---|---|---|---|",
    ]
    for split, per in report["sources"].items():
        for s in per:
            dropped = ", ".join(f"{n} {reason}" for reason, n in s["dropped"].items()) or "0"
            lines.append(
                f"| {split} | {s['name']} | {s['rows_read']} | {s['rows_kept']} | {s['truncated']} | {dropped} | "
                f"{s['empty_turns_masked']} |"
            )
    if report.get("kind", "sequence") != "sequence":
        return "\n".join(lines + _render_post_training(report, color=color))
    lines += [
        "",
        "## Tokens",
        "",
        f"- train sequences: {t['sequences']:,}; tokens: {t['tokens']:,}; supervised: {t['supervised_tokens']:,} "
        f"({100 * t['supervised_fraction']:.1f}%)",
        f"- eval sequences: {report['eval']['sequences']:,}; tokens: {report['eval']['tokens']:,}",
        "",
        "## Packing",
        "",
    ]
    for split, p in report["packing"].items():
        lines.append(
            f"- {split}: {p['sequences']:,} sequences in {p['rows']:,} rows, efficiency {100 * p['efficiency']:.2f}%"
        )
    if len(report["mixture"]) > 1:
        lines += [
            "",
            "## Mixture (share of training tokens)",
            "",
            "| source | weight share | realized share |",
            "|---|---|---|",
        ]
        lines += [
            f"| {m['source']} | {m['weight_share']:.3f} | {m['realized_token_share']:.3f} |" for m in report["mixture"]
        ]
    lines += ["", "## Sequence lengths (train)", "", "| tokens | sequences |", "|---|---|"]
    peak = max((b["count"] for b in t["length_histogram"]), default=1) or 1
    for b in t["length_histogram"]:
        bar = "#" * round(30 * b["count"] / peak)
        lines.append(f"| {b['from']}-{b['to']} | {b['count']} {bar} |")
    lines += ["", "## Examples (trained tokens " + ("in green" if color else "in [[double brackets]]") + ")", ""]
    for i, segments in enumerate(report["examples"]):
        lines += [f"### example {i}", "", "```", render_example(segments, color=color), "```", ""]
    return "\n".join(lines)


def write_report(report: dict[str, Any], out: Path) -> None:
    write_json_atomic(out / "report.json", report)
    (out / "report.md").write_text("# Preprocessing report\n\n" + render_report(report, color=False) + "\n")
