"""Training throughput and peak memory: `train` vs a tutorial HF Trainer + PEFT script and vs
TRL's SFTTrainer, side by side in one script.

    python bench/train_throughput.py [--steps 10] [--data ../shared/data/gsm8k]
    python bench/train_throughput.py --gpu      # on a GPU machine (not yet run on one)

Same model (SmolLM2-135M-Instruct, fp32 on the CPU), data (GSM8K train), LoRA (r16,
alpha 32, all linear layers), 4 rows of up to 512 tokens per step, gradient checkpointing
off, the same number of steps, each side in its own process. hydratune packs rows and
computes the loss in chunks over supervised tokens (also run with `train.loss_kernel=plain`);
the tutorial pads each batch to its longest row; TRL packs (its best configuration here).
The peers use LoRA dropout 0.05 (the PEFT tutorials' setting); hydratune's default is 0, so it
also runs once with 0.05 to separate that choice from the rest. hydratune also runs with
`train.compile=layers` and `model`: their speed against eager, the compile time (the first
step's time beyond eager's) and the first 8 losses against eager's; and, on the CPU, with
`model.attn_implementation=sdpa` (transformers' SDPA with a block-diagonal mask over each packed
row) against its default `sdpa_packed` (each packed sequence attended on its own).

With `--gpu` every side trains a Llama-shaped model instead (Llama-3.2-1B's dimensions, random
weights, SmolLM2's tokenizer; built locally, nothing downloaded) in bf16, on rows of up to 2048
tokens, and the matmul rate is the GPU's bf16 rate, so the last column is the model FLOPs
utilization. hydratune picks its kernel itself (`model.attn_implementation=auto`, as a user's
run does); the peers take flash-attention where flash_attn is installed, else SDPA. Every clock
reading waits for the GPU first: the peers' step times and the matmul rate come from
step_clock.py, hydratune's tokens/s from its own log, which synchronizes the same way.

Reported per side: the median real (non-pad) tokens/s over the steps after the first two,
the process's peak RSS, and the fraction of this machine's measured fp32 matmul rate that
the useful training FLOPs reach (FLOPs per token from hydratune's plan, the same model and
adapter for every side).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from step_clock import synchronized_now

HERE = Path(__file__).resolve().parent
PEAK = (
    "import resource, runpy, sys, atexit; atexit.register(lambda: print('PEAK_RSS_MB', "
    "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)); "
)
WARMUP_STEPS = 2


def run(cmd: list[str], env: dict[str, str] | None = None) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(out.stdout[-2000:] + out.stderr[-4000:])
    return out.stdout + out.stderr


def peak_mb(text: str) -> float:
    return float(re.findall(r"PEAK_RSS_MB ([\d.]+)", text)[-1])


# Llama-3.2-1B's dimensions on SmolLM2's architecture class (LlamaForCausalLM) and vocabulary.
LLAMA_1B_SHAPE = {
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 64,
}


def matmul_flops_per_second(gpu: bool, size: int = 4096, repeats: int = 10, windows: int = 5) -> float:
    """This machine's matmul rate in the training precision (fp32 on the CPU, bf16 on a GPU):
    the ceiling training is measured against, so the best of several short windows (one window
    can fall on a moment the shared machine is slow)."""
    import torch

    device, dtype = ("cuda", torch.bfloat16) if gpu else ("cpu", torch.float32)
    size = size if gpu else 2048
    a, b = torch.randn(size, size, device=device, dtype=dtype), torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    best = 0.0
    for _ in range(windows):
        start = synchronized_now()
        for _ in range(repeats):
            a @ b
        best = max(best, 2 * size**3 * repeats / (synchronized_now() - start))
    return best


def llama_shaped_model(embedded_dir: str, out: str) -> str:
    """A random-weight model with Llama-3.2-1B's dimensions and the embedded tokenizer, saved to `out`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(embedded_dir)
    for key, value in LLAMA_1B_SHAPE.items():
        setattr(config, key, value)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).save_pretrained(out)
    AutoTokenizer.from_pretrained(embedded_dir).save_pretrained(out)
    return out


def peer(script: str, model_dir: str, train_file: str, steps: int, out: str, *extra: str) -> dict:
    text = run(
        [
            sys.executable,
            "-c",
            PEAK + f"sys.argv = ['x', {model_dir!r}, {train_file!r}, '{steps}', {out!r}, *{list(extra)!r}]; "
            f"runpy.run_path({str(HERE / script)!r}, run_name='__main__')",
        ]
    )
    steps_seen = json.loads(re.findall(r"BENCH_RESULT (.*)", text)[-1])
    rates = [n / s for n, s in zip(steps_seen["step_tokens"], steps_seen["step_seconds"])][WARMUP_STEPS:]
    out = {"tokens_per_second": statistics.median(rates), "peak_rss_mb": peak_mb(text), "steps_timed": len(rates)}
    if "step_computed_tokens" in steps_seen:  # padded batches: the positions computed, pads included
        real, computed = (
            sum(steps_seen["step_tokens"][WARMUP_STEPS:]),
            sum(steps_seen["step_computed_tokens"][WARMUP_STEPS:]),
        )
        out["padding_share"] = 1 - real / computed
    return out


def hydratune(data: Path, steps: int, out: str, *extra: str, max_length: int = 512, prelude: str = "") -> dict:
    overrides = [
        "+experiment=gsm8k_lora",
        f"dataset.path={data}",
        f"dataset.max_length={max_length}",
        "dataset.strip_calculator_annotations=false",
        "method.lora.rank=16",
        "method.lora.alpha=32",
        "train.gradient_checkpointing=false",
        "train.micro_batch_size=4",
        f"train.max_steps={steps}",
        "eval=[none]",
        "train.sample_prompt=null",
        "train.report_to=[]",
        f"hydra.run.dir={out}",
        *extra,
    ]
    # A compiled side compiles from nothing, as a first run does: its own empty inductor cache.
    compiling = any(o.startswith("train.compile=") for o in extra)
    text = run(
        [
            sys.executable,
            "-c",
            PEAK
            + prelude
            + f"sys.argv = ['train', *{overrides!r}]; "
            + "runpy.run_module('hydratune.commands.train', run_name='__main__')",
        ],
        env={**os.environ, "TORCHINDUCTOR_CACHE_DIR": f"{out}-inductor-cache"} if compiling else None,
    )
    record = json.loads((Path(out) / "run.json").read_text())
    rates = [e["tokens_per_second"] for e in record["log_history"] if "tokens_per_second" in e][WARMUP_STEPS:]
    return {
        "tokens_per_second": statistics.median(rates),
        "peak_rss_mb": peak_mb(text),
        "steps_timed": len(rates),
        "losses": [e["loss"] for e in record["log_history"] if "loss" in e and "eval_loss" not in e],
        "first_step_seconds": record["wall_seconds"]["first_step"],
        "compile": record["compile"],
        "flops_per_token": record["plan"]["train_flops_per_token"],
        "plan_memory_gib": record["memory"]["estimated_bytes"] / 2**30,
        "measured_peak_gib": (record["memory"]["measured_peak_bytes"] or 0) / 2**30,
    }


COMPILE_MODES = ("layers", "model")
PARITY_STEPS = 8


def compile_summary(sides: dict) -> dict:
    """Each compiled side against eager: speed, what compiling cost before the first step, and the
    largest difference of the first 8 losses (the same data and seed: they agree to rounding)."""
    eager = sides["hydratune"]
    out = {}
    for mode in COMPILE_MODES:
        side = sides[f"hydratune (train.compile={mode})"]
        pairs = list(zip(side["losses"], eager["losses"]))[:PARITY_STEPS]
        out[mode] = {
            "speedup": side["tokens_per_second"] / eager["tokens_per_second"],
            "compile_seconds": side["first_step_seconds"] - eager["first_step_seconds"],
            "graphs": side["compile"]["graphs"],
            "loss_steps_compared": len(pairs),
            "max_loss_difference": max(abs(a - b) for a, b in pairs),
            "peak_rss_vs_eager": side["peak_rss_mb"] / eager["peak_rss_mb"],
        }
    return out


def side_settings(gpu: bool, model_dir: str, attention: str) -> tuple[list[str], list[str], int]:
    """hydratune's overrides, the peers' extra arguments and the row length. On a GPU hydratune
    picks its own kernel (`auto`: flash-attention 2 where flash_attn is installed, else SDPA one
    packed sequence at a time), as a user's run does; the peers get flash-attention where it is
    installed, else transformers' SDPA, as their own scripts would."""
    if not gpu:
        return [], [], 512
    ours = [f"model.name={model_dir}", "model.attn_implementation=auto", "train.precision=bf16"]
    return ours, ["gpu", attention], 2048


def hydratune_sides(data: Path, steps: int, tmp: str, ours: list[str], max_length: int, gpu: bool) -> dict:
    def side(name: str, *extra: str) -> dict:
        return hydratune(data, steps, f"{tmp}/{name}", *extra, *ours, max_length=max_length)

    sides = {
        "hydratune": side("ours"),
        "hydratune (method.lora.dropout=0.05, as the peers)": side("dropout", "method.lora.dropout=0.05"),
    }
    if not gpu:  # transformers' SDPA with its block-diagonal mask, as before sdpa_packed (auto's choice here)
        sides["hydratune (model.attn_implementation=sdpa)"] = side("sdpa", "model.attn_implementation=sdpa")
    for mode in COMPILE_MODES:
        sides[f"hydratune (train.compile={mode})"] = side(mode, f"train.compile={mode}")
    sides["hydratune (train.loss_kernel=plain)"] = side("plain", "train.loss_kernel=plain")
    return sides


PEERS = {
    "tutorial Trainer+PEFT (padded)": ("tutorial_trainer_peft.py", []),
    "TRL SFTTrainer (packed, checkpointing off)": ("trl_sft_trainer.py", ["packed"]),
    "TRL SFTTrainer (padded)": ("trl_sft_trainer.py", ["padded"]),
}


def peer_sides(model_dir: str, train_file: str, steps: int, tmp: str, extra: list[str], max_length: int) -> dict:
    return {
        name: peer(script, model_dir, train_file, steps, f"{tmp}/peer{i}", str(max_length), *variant, *extra)
        for i, (name, (script, variant)) in enumerate(PEERS.items())
    }


def summary(sides: dict, matmul: float, steps: int, device: str, max_length: int) -> dict:
    flops_per_token = sides["hydratune"]["flops_per_token"]
    ours = sides["hydratune"]
    for side in sides.values():
        side["fraction_of_matmul_rate"] = side["tokens_per_second"] * flops_per_token / matmul
        side["throughput_vs_hydratune"] = side["tokens_per_second"] / ours["tokens_per_second"]
    tutorial = sides["tutorial Trainer+PEFT (padded)"]
    trl_best = max(sides[name]["tokens_per_second"] for name in PEERS if name.startswith("TRL"))
    return {
        "compile": compile_summary(sides),
        "steps": steps,
        "device": device,
        "max_length": max_length,
        "matmul_gflops": matmul / 1e9,
        "sides": sides,
        "ratios": {
            "hydratune_vs_tutorial_tokens_per_second": ours["tokens_per_second"] / tutorial["tokens_per_second"],
            "hydratune_vs_trl_best_tokens_per_second": ours["tokens_per_second"] / trl_best,
            "hydratune_vs_tutorial_peak_rss": ours["peak_rss_mb"] / tutorial["peak_rss_mb"],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--data", type=Path, default=HERE.parents[1] / "shared" / "data" / "gsm8k")
    parser.add_argument("--gpu", action="store_true", help="a Llama-shaped model in bf16 on a GPU")
    parser.add_argument(
        "--base", type=Path, help="a folder with the config and tokenizer to use (default: the embedded SmolLM2)"
    )
    args = parser.parse_args()

    from hydratune.cache_dirs import cache_root
    from hydratune.config.spec import ModelSpec
    from hydratune.models.model_loading import model_location

    model_dir = str(args.base or model_location(ModelSpec(name="embedded:smollm2-135m-instruct"), cache_root()))
    # the peers' kernel: flash-attention where its package is installed; else SDPA
    attention = "flash_attention_2" if importlib.util.find_spec("flash_attn") else "sdpa"
    matmul_before = matmul_flops_per_second(args.gpu)  # and again after the sides: the better of the two
    with tempfile.TemporaryDirectory() as tmp:
        if args.gpu:
            model_dir = llama_shaped_model(model_dir, f"{tmp}/llama_shaped")
        ours, peers_extra, max_length = side_settings(args.gpu, model_dir, attention)
        sides = hydratune_sides(args.data, args.steps, tmp, ours, max_length, args.gpu)
        sides |= peer_sides(model_dir, str(args.data / "train.jsonl"), args.steps, tmp, peers_extra, max_length)
    matmul = max(matmul_before, matmul_flops_per_second(args.gpu))
    device = (
        f"gpu: Llama-3.2-1B-shaped, bf16, hydratune auto, peers {attention}"
        if args.gpu
        else "cpu: SmolLM2-135M, fp32, sdpa"
    )
    print(json.dumps(summary(sides, matmul, args.steps, device, max_length), indent=2))


if __name__ == "__main__":
    main()
