"""Where a training step's CPU time goes: the training bench's hydratune run (eager, LoRA r16, 4
packed rows of up to 512 tokens, fp32) with two steps under torch.profiler, each op's self time
put in one of three groups (matmuls, attention, the rest). Run with the default attention and
with transformers' SDPA.

    python bench/step_profile.py [--data ../shared/data/gsm8k]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from step_profiler import PROFILED_STEPS, WARMUP_STEPS
from train_throughput import HERE, hydratune

GROUPS = {
    "matmul": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear"),
    "attention": ("flash_attention", "scaled_dot_product", "_efficient_attention", "aten::_softmax"),
}
SIDES = {"default (auto)": [], "model.attn_implementation=sdpa": ["model.attn_implementation=sdpa"]}


def group_of(op: str) -> str:
    for group, names in GROUPS.items():
        if any(name in op for name in names):
            return group
    return "other"


def shares(ops: dict[str, float]) -> dict:
    total = sum(ops.values())
    by_group: dict[str, float] = {}
    for op, micros in ops.items():
        by_group[group_of(op)] = by_group.get(group_of(op), 0.0) + micros
    top = sorted(ops.items(), key=lambda kv: -kv[1])[:12]
    return {
        "profiled_seconds": total / 1e6,
        "shares": {g: by_group.get(g, 0.0) / total for g in (*GROUPS, "other")},
        "top_ops": {op: micros / total for op, micros in top},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=HERE.parents[1] / "shared" / "data" / "gsm8k")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in SIDES.items():
            path = f"{tmp}/{len(results)}.json"
            prelude = f"sys.path.insert(0, {str(HERE)!r}); import step_profiler; step_profiler.install({path!r}); "
            hydratune(args.data, WARMUP_STEPS + PROFILED_STEPS, f"{tmp}/run{len(results)}", *extra, prelude=prelude)
            results[name] = shares(json.loads(Path(path).read_text()))
            print(name, json.dumps(results[name]["shares"]), file=sys.stderr, flush=True)
    print(json.dumps({"steps_profiled": PROFILED_STEPS, "sides": results}, indent=2))


if __name__ == "__main__":
    main()
