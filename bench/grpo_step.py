"""GRPO step speed: `train +experiment=arithmetic_grpo` as shipped (with its group filter) against a
plain TRL GRPOTrainer script (trl_grpo_trainer.py) with the same start model, LoRA, prompts, group
size, completion length, temperature, beta and loss, side by side in one script, the sides
alternating (hydratune, TRL, hydratune, TRL, ...), each run in its own process.

    python bench/grpo_step.py --start outputs/quickstart [--steps 8] [--repeats 1]

`--start` is the run the chain starts from (`train +experiment=quickstart`); without it the
quickstart is trained first (about 8 minutes here). Reported per side (medians over the repeats):
seconds per optimizer step, completions per second (TRL's train_runtime over the steps, so both
sides count the same work: sampling, rewards, reference and policy passes), the groups trained on
whose rewards differed, the seconds per such group (what the filter buys: TRL trains on every
group it samples, and about half carry no signal), and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
from pathlib import Path

from train_throughput import HERE, PEAK, peak_mb, run


def train(overrides: list[str]) -> str:
    return run(
        [
            sys.executable,
            "-c",
            PEAK
            + f"sys.argv = ['train', *{overrides!r}]; "
            + "runpy.run_module('hydratune.commands.train', run_name='__main__')",
        ]
    )


def shared_settings(start: Path) -> dict:
    """The experiment's settings, read from its composed spec so both sides always match it."""
    from hydratune.commands.cli import compose_spec

    spec = compose_spec(["+experiment=arithmetic_grpo", f"model.name={start}"])
    m = spec.method
    return {
        "completions_per_step": spec.train.micro_batch_size,
        "num_generations": m.num_generations,
        "max_completion_length": m.max_completion_length,
        "temperature": m.temperature,
        "beta": m.beta,
        "loss_type": m.loss_type or "dapo",
        "learning_rate": spec.optim.learning_rate,
        "seed": spec.train.seed,
        "lora": (m.lora.rank, m.lora.alpha, m.lora.dropout),
        "rewards": list(m.rewards),
    }


def side_hydratune(start: Path, steps: int, out: str) -> dict:
    text = train(
        [
            "+experiment=arithmetic_grpo",
            f"model.name={start}",
            f"train.max_steps={steps}",
            "eval=[none]",
            "train.sample_prompt=null",
            "train.report_to=[]",
            f"hydra.run.dir={out}",
        ]
    )
    record = json.loads((Path(out) / "run.json").read_text())
    runtime = next(e["train_runtime"] for e in record["log_history"] if "train_runtime" in e)
    groups = record["spec"]["train"]["micro_batch_size"] // record["spec"]["method"]["num_generations"]
    # the filter logs the share of the batch it had to fill with groups without spread
    spread = [
        groups * (1 - e.get("groups/no_spread_trained", e["frac_reward_zero_std"]))
        for e in record["log_history"]
        if "frac_reward_zero_std" in e
    ]
    return {
        "steps": record["metrics"]["global_step"],
        "train_runtime": runtime,
        "groups_with_spread": round(sum(spread)),
        "peak_rss_mb": peak_mb(text),
    }


def side_trl(start: Path, steps: int, out: str, settings: dict) -> dict:
    from hydratune.data.synthetic_arithmetic import generated_split_file

    train_file = generated_split_file("arithmetic", "train", None)
    text = run(
        [
            sys.executable,
            "-c",
            PEAK
            + f"sys.argv = ['x', {str(start / 'merged')!r}, {str(train_file)!r}, '{steps}', {out!r}, "
            + f"{json.dumps(settings)!r}]; runpy.run_path({str(HERE / 'trl_grpo_trainer.py')!r}, run_name='__main__')",
        ]
    )
    result = json.loads(re.findall(r"RESULT (.*)", text)[-1])
    return {**result, "peak_rss_mb": peak_mb(text)}


def quickstart(out: Path) -> Path:
    train(["+experiment=quickstart", "eval=[none]", "train.sample_prompt=null", f"hydra.run.dir={out}"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--start", type=Path, help="the run GRPO starts from (default: train the quickstart)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1, help="runs per side, alternating")
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {"hydratune": [], "trl": []}
    with tempfile.TemporaryDirectory() as tmp:
        start = (args.start or quickstart(Path(tmp) / "quickstart")).resolve()
        settings = shared_settings(start)
        if settings["lora"] != (8, 16.0, 0.0) or settings["rewards"] != ["gsm8k_correct"]:
            raise SystemExit(
                "trl_grpo_trainer.py trains LoRA rank 8, alpha 16, no dropout, on the correctness reward; the "
                f"experiment has {settings['lora']} and {settings['rewards']}"
            )
        for i in range(args.repeats):
            runs["hydratune"].append(side_hydratune(start, args.steps, str(Path(tmp) / f"hydratune{i}")))
            runs["trl"].append(side_trl(start, args.steps, str(Path(tmp) / f"trl{i}"), settings))
    sides = {name: summarized(done, settings) for name, done in runs.items()}
    result = {
        "settings": settings,
        "sides": sides,
        "runs": runs,
        "speedup_vs_trl": sides["trl"]["seconds_per_step"] / sides["hydratune"]["seconds_per_step"],
        "per_spread_group_vs_trl": sides["trl"]["seconds_per_spread_group"]
        / sides["hydratune"]["seconds_per_spread_group"],
        "memory_vs_trl": sides["hydratune"]["peak_rss_mb"] / sides["trl"]["peak_rss_mb"],
    }
    print(f"{'side':<10} {'s/step':>8} {'completions/s':>14} {'groups w/ spread':>17} {'s/group':>8} {'peak MB':>8}")
    for name, side in sides.items():
        print(
            f"{name:<10} {side['seconds_per_step']:8.2f} {side['completions_per_second']:14.2f} "
            f"{side['groups_with_spread']:17.0f} {side['seconds_per_spread_group']:8.2f} {side['peak_rss_mb']:8.0f}"
        )
    print(
        f"hydratune vs TRL: {result['per_spread_group_vs_trl']:.2f}x the speed per group with spread, "
        f"{result['speedup_vs_trl']:.2f}x per step, at {result['memory_vs_trl']:.2f}x the memory"
    )
    print(json.dumps(result, indent=2))


def summarized(done: list[dict], settings: dict) -> dict:
    """A side's medians over its runs: seconds per step and per group with spread, completions/s."""
    per_step = statistics.median(d["train_runtime"] / d["steps"] for d in done)
    per_group = statistics.median(d["train_runtime"] / max(d["groups_with_spread"], 1) for d in done)
    return {
        "steps": done[0]["steps"],
        "seconds_per_step": per_step,
        "completions_per_second": settings["completions_per_step"] / per_step,
        "groups_with_spread": statistics.median(d["groups_with_spread"] for d in done),
        "seconds_per_spread_group": per_group,
        "peak_rss_mb": max(d["peak_rss_mb"] for d in done),
    }


if __name__ == "__main__":
    main()
