"""Every GPU path of hydratune in one command, for the day a GPU is lent: one JSON of results.

    python bench/gpu_harness.py --prepare .gpu_kit                 # here: what the GPU machine lacks
    python bench/gpu_harness.py --kit .gpu_kit --out results.json  # there: the parts, in 10 minutes

The GPU machine has no network and no embedded SmolLM2 (its 98 MB do not travel), so
`--prepare` writes a kit: SmolLM2's config and tokenizer without weights (models are built
with random weights there, which throughput and the code paths do not need) and a slice of
GSM8K. ../shared/gpu/README.md says how the package and its wheels travel.

The parts, one after another, each a subprocess given what is left of the budget:
- quickstart: the README's main job (LoRA, bf16, packing, evaluation) on SmolLM2-135M's shape.
- gsm8k_qlora: `+experiment=gsm8k_qlora` on a Llama-3.2-1B-shaped model (needs bitsandbytes).
- training_bench: bench/train_throughput.py --gpu: hydratune (eager and compiled) against TRL
  and the tutorial script, bf16, flash-attention where flash_attn is installed (else SDPA).
- grpo_vllm: `+experiment=arithmetic_grpo` sampling with vLLM colocated (needs vllm).
Without CUDA, or without a part's package, the part is skipped and the JSON names it and why;
a part that fails keeps the tail of its output. The JSON is rewritten after every part, so a
run cut short still returns what finished.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BUDGET_SECONDS = 600
GSM8K_ROWS = {"train": 2000, "test": 200}

sys.path.insert(0, str(HERE))
from train_throughput import LLAMA_1B_SHAPE  # noqa: E402


def prepare_kit(kit: Path, gsm8k: Path) -> None:
    """SmolLM2's config and tokenizer (no weights) and the first GSM8K rows, into `kit`."""
    from hydratune.cache_dirs import cache_root
    from hydratune.config.spec import ModelSpec
    from hydratune.models.model_loading import model_location

    model_dir = Path(model_location(ModelSpec(name="embedded:smollm2-135m-instruct"), cache_root()))
    (kit / "smollm2").mkdir(parents=True, exist_ok=True)
    for f in model_dir.iterdir():
        if f.is_file() and f.suffix != ".safetensors" and f.name != "manifest.json":
            shutil.copyfile(f, kit / "smollm2" / f.name)
    (kit / "gsm8k").mkdir(exist_ok=True)
    for split, rows in GSM8K_ROWS.items():
        with open(gsm8k / f"{split}.jsonl") as source:
            lines = [line for _, line in zip(range(rows), source)]
        (kit / "gsm8k" / f"{split}.jsonl").write_text("".join(lines))


def llama_1b(prefix: str = "model.config_overrides") -> list[str]:
    return [f"++{prefix}.{key}={value}" for key, value in LLAMA_1B_SHAPE.items()]


def parts(kit: Path) -> list[dict]:
    """Name, command, the packages it needs, and how its result is read."""
    model = [f"model.name={kit / 'smollm2'}", "model.random_init=true"]
    gsm8k = kit / "gsm8k"
    train = [sys.executable, "-m", "hydratune.commands.train"]
    return [
        {
            "name": "quickstart",
            "command": [*train, "+experiment=quickstart", *model, "train.report_to=[]"],
            "needs": [],
            "reads": "run",
        },
        {
            "name": "gsm8k_qlora",
            "command": [
                *train,
                "+experiment=gsm8k_qlora",
                *model,
                *llama_1b(),
                f"dataset.path={gsm8k}",
                "train.max_steps=30",
                "train.save_steps=null",
                f"eval.tasks.gsm8k.path={gsm8k}",
                "eval.tasks.gsm8k.config_name=null",
                "eval.tasks.gsm8k.max_samples=64",
                "eval.tasks.gsm8k.max_new_tokens=128",
                "eval.tasks.gsm8k.batch_size=64",
                "train.report_to=[]",
            ],
            "needs": ["bitsandbytes"],
            "reads": "run",
        },
        {
            "name": "training_bench",
            "command": [
                sys.executable,
                str(HERE / "train_throughput.py"),
                "--gpu",
                "--steps",
                "6",
                "--base",
                str(kit / "smollm2"),
                "--data",
                str(gsm8k),
            ],
            "needs": ["trl"],
            "reads": "stdout",
        },
        {
            "name": "grpo_vllm",
            "command": [
                *train,
                "+experiment=arithmetic_grpo",
                *model,
                "method.generation=vllm_colocate",
                "train.max_steps=4",
                "eval=[none]",
                "train.report_to=[]",
            ],
            "needs": ["vllm"],
            "reads": "run",
        },
    ]


def run_figures(run_dir: Path) -> dict:
    """What a run measured, from its run.json."""
    record = json.loads((run_dir / "run.json").read_text())
    rates = [e["tokens_per_second"] for e in record["log_history"] if "tokens_per_second" in e]
    return {
        "precision": record["precision"],
        "attention": record["plan"].get("attention"),
        "median_tokens_per_second": sorted(rates)[len(rates) // 2] if rates else None,
        "memory": record["memory"],
        "wall_seconds": record["wall_seconds"],
        "metrics": record["metrics"],
    }


def run_part(part: dict, seconds_left: float, scratch: Path) -> dict:
    out = {"name": part["name"], "command": " ".join(part["command"])}
    import torch

    if not torch.cuda.is_available():
        return {**out, "status": "skipped", "why": "no CUDA device"}
    missing = [p for p in part["needs"] if importlib.util.find_spec(p) is None]
    if missing:
        return {**out, "status": "skipped", "why": f"{', '.join(missing)} not installed"}
    if seconds_left < 30:
        return {**out, "status": "out of time", "why": f"the {BUDGET_SECONDS} s budget was spent"}
    run_dir = scratch / part["name"]
    command = part["command"] + ([f"hydra.run.dir={run_dir}"] if part["reads"] == "run" else [])
    env = dict(os.environ, HYDRATUNE_CACHE=str(scratch / "cache"))
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=seconds_left)
    except subprocess.TimeoutExpired:
        return {**out, "status": "out of time", "seconds": time.perf_counter() - start}
    out["seconds"] = time.perf_counter() - start
    if done.returncode != 0:
        return {**out, "status": "failed", "output_tail": (done.stdout + done.stderr)[-4000:]}
    if part["reads"] == "run":
        return {**out, "status": "ran", "result": run_figures(run_dir)}
    text = "\n" + done.stdout
    return {**out, "status": "ran", "result": json.loads(text[text.rindex("\n{\n") + 1 :])}


def device() -> str:
    import torch

    if not torch.cuda.is_available():
        return f"no CUDA device (torch {torch.__version__})"
    return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prepare", type=Path, help="write the kit here and stop")
    parser.add_argument("--gsm8k", type=Path, default=ROOT.parent / "shared" / "data" / "gsm8k")
    parser.add_argument("--kit", type=Path, default=ROOT / ".gpu_kit")
    parser.add_argument("--out", type=Path, default=Path("gpu_results.json"))
    args = parser.parse_args()
    if args.prepare:
        prepare_kit(args.prepare, args.gsm8k)
        print(f"kit written to {args.prepare}")
        return
    if not (args.kit / "smollm2" / "config.json").is_file():
        raise SystemExit(f"no kit at {args.kit}: run `python bench/gpu_harness.py --prepare {args.kit}` first")
    deadline = time.monotonic() + BUDGET_SECONDS
    results = {"device": device(), "budget_seconds": BUDGET_SECONDS, "parts": []}
    with tempfile.TemporaryDirectory() as scratch:
        for part in parts(args.kit.resolve()):
            results["parts"].append(run_part(part, deadline - time.monotonic(), Path(scratch)))
            args.out.write_text(json.dumps(results, indent=2))
            print(json.dumps({k: v for k, v in results["parts"][-1].items() if k != "output_tail"}), flush=True)


if __name__ == "__main__":
    main()
