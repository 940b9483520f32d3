"""`hydratune-eval TARGET`: score a run directory, a merged or adapter directory, or a model name.

    hydratune-eval outputs/runs/2026-11-25_10-00-00                  # the run's eval tasks, tuned vs base
    hydratune-eval outputs/runs/<run>/adapter --max-samples 50
    hydratune-eval embedded:smollm2-135m-instruct --task gsm8k --gsm8k-path ../shared/data/gsm8k --max-samples 20
    hydratune-eval outputs/runs/<run> --task lm_eval --lm-eval-tasks arc_easy,hellaswag --max-samples 100
    hydratune-eval outputs/runs/<run> --num-samples 8 --temperature 0.8  # sampled pass@1, pass@8, maj@8 too

Writes metrics.json and predictions.jsonl (and predictions_base.jsonl) into --out
(default: <run>/eval/<time>/ beside the evaluation the run made when it finished, else
./eval-<name>/<time>/), and prints base vs tuned with 95% intervals and a paired test
(McNemar's on greedy answers, a permutation test on sampled scores). An evaluation is never
written over another: an --out that holds one is refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path
from typing import Any

from hydratune.cache_dirs import cache_root as default_cache_root
from hydratune.commands.cli import add_model_source_flags, user_errors_exit
from hydratune.config.environment import detect_environment
from hydratune.config.problems import ConfigError, Problem, raise_if_any
from hydratune.config.spec import ModelSpec
from hydratune.evaluate.run_evaluation import run_evaluation
from hydratune.evaluate.targets import base_target, resolve_target
from hydratune.evaluate.tasks import TASKS
from hydratune.evaluate.tasks.harness import harness_problems
from hydratune.models.inference_placement import inference_placement
from hydratune.run_layout import RunDirectory
from hydratune.training.plan import resolve_precision

# command-line flag -> task option it overrides
OPTION_FLAGS = {
    "max_samples": int,
    "num_shots": int,
    "batch_size": int,
    "max_new_tokens": int,
    "backend": str,
    "num_fewshot": int,
    "include_path": str,
    "num_samples": lambda text: _at_least(int(text), 0, "--num-samples"),
    "temperature": lambda text: _above(float(text), 0.0, "--temperature"),
    "sample_seed": int,
}
# the same flag under the harness's names (lm_eval)
HARNESS_NAMES = {"max_samples": "limit", "num_shots": "num_fewshot"}


def _at_least(value: int, low: int, flag: str) -> int:
    if value < low:
        raise argparse.ArgumentTypeError(f"{flag} must be at least {low}, got {value}")
    return value


def _above(value: float, low: float, flag: str) -> float:
    if value <= low:
        raise argparse.ArgumentTypeError(f"{flag} must be above {low}, got {value}")
    return value


def task_options(resolved, args) -> dict[str, Any]:
    if resolved.spec is not None and not args.task:
        tasks = dict(resolved.spec.eval.tasks)
    else:
        tasks = {name: TASKS[name].options() for name in (args.task or ["gsm8k"])}
    changes = {k: getattr(args, k) for k in OPTION_FLAGS if getattr(args, k) is not None}
    out = {}
    for name, options in tasks.items():
        if not TASKS[name].generative:
            continue
        own = {k: v for k, v in changes.items() if hasattr(options, k)}
        if name == "gsm8k" and args.gsm8k_path:
            own["path"] = args.gsm8k_path
        if name == "lm_eval":
            own.update({HARNESS_NAMES[k]: v for k, v in changes.items() if k in HARNESS_NAMES})
            if args.lm_eval_tasks:
                own["tasks"] = tuple(t for t in args.lm_eval_tasks.split(",") if t)
        out[name] = dataclasses.replace(options, **own)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="hydratune-eval", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "target", help="run dir, merged dir, adapter dir, or a model name (Hub id, local dir, embedded:...)"
    )
    parser.add_argument("--task", action="append", choices=sorted(n for n, t in TASKS.items() if t.generative))
    parser.add_argument("--gsm8k-path", help="GSM8K location (Hub name, file or folder)")
    parser.add_argument(
        "--lm-eval-tasks", help="harness tasks for --task lm_eval, comma-separated (arc_easy,hellaswag)"
    )
    for flag, kind in OPTION_FLAGS.items():
        parser.add_argument("--" + flag.replace("_", "-"), dest=flag, type=kind)
    parser.add_argument(
        "--base", help="compare with this base model (default: the run's or the adapter's base); 'none' to skip"
    )
    parser.add_argument("--out", type=Path)
    add_model_source_flags(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")

    with user_errors_exit():
        evaluate_from_arguments(args)


def output_directory(out: Path | None, target: str, kind: str) -> Path:
    """Where this evaluation goes: --out, else a new folder named by the time, beside earlier ones."""
    if out is not None:
        if (out / "metrics.json").exists():
            raise ConfigError(
                [
                    Problem(
                        f"--out {out}",
                        "already holds an evaluation (metrics.json), which is never written over",
                        "give another --out, or leave it out for a new folder named by the time",
                    )
                ]
            )
        return out
    parent = RunDirectory(Path(target)).eval if kind == "run" else Path(f"eval-{Path(target).name}")
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    folder, n = parent / stamp, 1
    while folder.exists():  # two evaluations within a second
        n += 1
        folder = parent / f"{stamp}-{n}"
    return folder


def evaluate_from_arguments(args: argparse.Namespace) -> dict[str, float]:
    root = default_cache_root(args.cache_dir)
    # On a GPU machine the models load there, in bf16 where the GPU has it; on the CPU in fp32.
    env = detect_environment()
    placement = inference_placement(env, resolve_precision("auto", env))
    resolved = resolve_target(args.target, root, trust_remote_code=args.trust_remote_code, placement=placement)
    tasks = task_options(resolved, args)
    if not tasks:
        print("nothing to evaluate: no generative task (use --task gsm8k)", file=sys.stderr)
        sys.exit(2)
    if "lm_eval" in tasks:
        raise_if_any(harness_problems(tasks["lm_eval"], tasks_key="--lm-eval-tasks", path_key="--include-path"))
    base_spec = (
        ModelSpec(name=args.base, trust_remote_code=args.trust_remote_code)
        if args.base and args.base != "none"
        else resolved.base_model
    )
    base = None if args.base == "none" or base_spec is None else base_target(base_spec, root, placement=placement)
    out_dir = output_directory(args.out, args.target, resolved.kind)
    system_prompt = resolved.spec.dataset.system_prompt if resolved.spec else None
    metrics = run_evaluation(resolved.tuned, base, tasks, cache_root=root, out_dir=out_dir, system_prompt=system_prompt)
    print(f"results: {out_dir / 'metrics.json'}")
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])
