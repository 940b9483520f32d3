"""The post-training chain end to end, as the examples run it: SFT (the quickstart), then DPO and
GRPO from the SFT run, each with the experiment's shipped settings and nothing overridden but
the seed, and what each changed in held-out answers.

    python bench/post_training_chain.py [--start outputs/quickstart] [--seeds 42 7 1234]

Without `--start` the quickstart is trained first. Each DPO and GRPO run is the console
command a user types (`train +experiment=arithmetic_dpo model.name=<start>`), timed from start
to finish; its evaluation scores the start model and the result on the same held-out generated
problems, greedy, with McNemar's paired test. Reported per run: wall time, the start's and the
result's share of problems solved with 95% intervals, the problems only one of them solved, p.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METHODS = ("arithmetic_dpo", "arithmetic_grpo")


def train(overrides: list[str]) -> float:
    """Run `train` with the overrides; its wall seconds."""
    began = time.perf_counter()
    out = subprocess.run([shutil.which("train") or "train", *overrides], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(out.stdout[-3000:] + out.stderr[-4000:])
    return time.perf_counter() - began


def outcome(run: Path, wall: float) -> dict:
    """What the run's evaluation measured, start model against result, on strict accuracy."""
    summary = json.loads((run / "eval" / "metrics.json").read_text())["summary"]["gsm8k"]["strict_accuracy"]
    record = json.loads((run / "run.json").read_text())
    return {
        "wall_seconds": wall,
        "steps": record["metrics"]["global_step"],
        "start": summary["base"],
        "result": summary["tuned"],
        "mcnemar": summary["mcnemar"],
        "held_out_objective": {k: v for k, v in record["metrics"].items() if k.startswith("loss.")},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--start", type=Path, help="the SFT run to start from (default: train the quickstart)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--experiments", nargs="+", default=list(METHODS))
    parser.add_argument("--keep", type=Path, help="keep the runs under this folder (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        result: dict = {"runs": []}
        start = args.start
        if start is None:
            start = root / "quickstart"
            result["quickstart_wall_seconds"] = train(["+experiment=quickstart", f"hydra.run.dir={start}"])
        for seed in args.seeds:
            for experiment in args.experiments:
                run = root / f"{experiment}-seed{seed}"
                wall = train(
                    [f"+experiment={experiment}", f"model.name={start}", f"train.seed={seed}", f"hydra.run.dir={run}"]
                )
                result["runs"].append({"experiment": experiment, "seed": seed, **outcome(run, wall)})
                print(json.dumps(result["runs"][-1]), file=sys.stderr, flush=True)
    print(
        f"{'experiment':<16} {'seed':>5} {'minutes':>8} {'start':>8} {'result':>8} {'only result/start':>18} {'p':>8}"
    )
    for r in result["runs"]:
        print(
            f"{r['experiment']:<16} {r['seed']:>5} {r['wall_seconds'] / 60:8.1f} {100 * r['start']['value']:7.1f}% "
            f"{100 * r['result']['value']:7.1f}% "
            f"{r['mcnemar']['only_tuned_correct']:>9}/{r['mcnemar']['only_base_correct']:<8} "
            f"{r['mcnemar']['p_value']:8.2g}"
        )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
