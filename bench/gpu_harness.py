"""The first GPU run, scripted: the most information per minute, one JSON of results.

    python bench/gpu_harness.py --prepare .gpu_kit [--wheels]     # here: the kit (and the wheels)
    python bench/gpu_harness.py --kit .gpu_kit --out results.json  # there: the parts, in order

The lent GPU machine (one H100 or H200; torch 2.11, transformers 5.17, no network) has neither
hydra, datasets, trl, bitsandbytes nor the embedded SmolLM2 (its 98 MB do not travel; 64 MiB
in all do). `--prepare` writes the kit: SmolLM2's config and tokenizer without weights (models
are built with random weights there: throughput, memory and the code paths need no trained
ones) and a slice of GSM8K; `--wheels` also runs ../shared/gpu/fetch-wheels.sh with the extras
the parts need (bitsandbytes for QLoRA, trl for GRPO). vllm's wheel alone is far over 64 MiB:
its part runs only where vllm is installed. ../shared/gpu/README.md says how the wheels install.

The parts, in order, each in its own process group (killed as a group past its time), the
JSON rewritten after each, so a run cut short still returns what finished:
- preflight (runs without CUDA too): package versions, which of them import, torch's SDPA
  backends that run, and attention parity on a packed batch (hydratune's sdpa_packed and stock
  SDPA's block-diagonal mask against each sequence run alone); on a GPU also the device, its
  compute capability from torch and from NVML (what `train`'s parent reads), a bf16 matmul rate.
- lora_bf16: LoRA in bf16 on a Llama-3.2-1B-shaped model, packed 2,048-token rows: tokens/s and
  the model FLOPs utilization against the GPU's published bf16 peak and the measured matmul.
- qlora_memory, full_memory: QLoRA and full-weight training's measured peak against the plan.
- compile: LoRA with `train.compile=layers`: compile seconds and tokens/s against lora_bf16.
- grpo: `+experiment=arithmetic_grpo` with transformers' generation; grpo_vllm: the same with
  vLLM colocated (where vllm is installed), with what the run logs of its weight sync.
Without CUDA, or without a part's package, a part is skipped and the JSON names it and why.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BUDGET_SECONDS = 540  # of the 10-minute command: the wheels' install and the start come first
GSM8K_ROWS = {"train": 2000, "test": 200}
RESULT = "HARNESS_RESULT "
# What the lent machine lacks, carried by ../shared/gpu/fetch-wheels.sh: its base set, then the
# extras the parts need (`qlora` is its name for bitsandbytes). The image has torch and peft.
WHEELS_BASE = {"hydra", "omegaconf", "datasets", "gguf", "transformers", "peft"}
WHEELS_EXTRAS = {"qlora": "bitsandbytes", "trl==1.16.0": "trl"}
NOT_CARRIED = {"vllm": "its wheel alone is far over the 64 MiB that travel", "flash_attn": "no wheel fits torch 2.11"}
# Published dense bf16 tensor-core peaks (FLOP/s), by a part of the device's name, most specific first.
BF16_PEAKS = [("H100 PCIe", 756e12), ("H100", 989e12), ("H200", 989e12), ("A100", 312e12)]

sys.path.insert(0, str(HERE))
from train_throughput import LLAMA_1B_SHAPE, matmul_flops_per_second  # noqa: E402


# ------------------------------------------------------------------ the kit (here)
def prepare_kit(kit: Path, gsm8k: Path) -> None:
    """SmolLM2's config and tokenizer (no weights) and the first GSM8K rows, into `kit`."""
    from hydratune.cache_dirs import cache_root
    from hydratune.config.spec import ModelSpec
    from hydratune.models.model_loading import model_location

    model_dir = Path(model_location(ModelSpec(name="embedded:smollm2-135m-instruct"), cache_root()))
    (kit / "smollm2").mkdir(parents=True, exist_ok=True)
    for f in model_dir.iterdir():
        if f.is_file() and f.suffix != ".safetensors" and f.name != "manifest.json":
            (kit / "smollm2" / f.name).write_bytes(f.read_bytes())
    (kit / "gsm8k").mkdir(exist_ok=True)
    for split, rows in GSM8K_ROWS.items():
        with open(gsm8k / f"{split}.jsonl") as source:
            lines = [line for _, line in zip(range(rows), source)]
        (kit / "gsm8k" / f"{split}.jsonl").write_text("".join(lines))


def fetch_wheels_command() -> list[str]:
    """../shared/gpu/fetch-wheels.sh with the extras the parts need, run in the project root."""
    return ["bash", str(ROOT.parent / "shared" / "gpu" / "fetch-wheels.sh"), *WHEELS_EXTRAS]


def carried_packages() -> set[str]:
    return WHEELS_BASE | set(WHEELS_EXTRAS.values())


# ------------------------------------------------------------------ preflight (there, and here)
def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    names = ["torch", "transformers", "peft", "accelerate", "trl", "bitsandbytes", "flash-attn", "vllm"]
    names += ["hydra-core", "datasets", "huggingface-hub", "tokenizers", "safetensors", "triton"]
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def imports() -> dict:
    """Which modules import here: 'ok', or the error's last line."""
    found = {}
    for module in ["transformers", "peft", "trl", "bitsandbytes", "hydratune.commands.train", "flash_attn", "vllm"]:
        try:
            importlib.import_module(module)
            found[module] = "ok"
        except Exception as error:  # any failure to import is the finding
            found[module] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    return found


def sdpa_backends(device: str, dtype) -> dict:
    """Each SDPA backend on one causal call of training's shape: 'runs' or why not."""
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q, k, v = (torch.randn(1, 8, 256, 64, device=device, dtype=dtype) for _ in range(3))
    found = {}
    for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION):
        try:
            with sdpa_kernel(backend):
                F.scaled_dot_product_attention(q, k, v, is_causal=True)
            found[backend.name] = "runs"
        except RuntimeError as error:
            found[backend.name] = str(error).splitlines()[0][:200]
    return found


def packed_parity(kit: Path, device: str, dtype) -> dict:
    """One packed row of three sequences (position_ids restarting) through a small random model
    with sdpa_packed and with stock SDPA, against each sequence run alone: the largest logit gap."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from hydratune.models.attention_choice import PACKED_SDPA
    from hydratune.models.packed_attention import register_packed_sdpa

    register_packed_sdpa()
    config = AutoConfig.from_pretrained(kit / "smollm2")
    small = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4)
    for key, value in {**small, "num_key_value_heads": 2, "head_dim": 32}.items():
        setattr(config, key, value)
    lengths = [37, 64, 23]
    ids = torch.randint(0, config.vocab_size, (1, sum(lengths)), device=device)
    positions = torch.cat([torch.arange(n) for n in lengths])[None].to(device)
    logits = {}
    for attention in (PACKED_SDPA, "sdpa"):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, attn_implementation=attention, dtype=dtype).to(device)
        with torch.no_grad():
            # use_cache=False, as in training: with a cache transformers does not look for packed rows
            logits[attention] = model(input_ids=ids, position_ids=positions, use_cache=False).logits.float()
            alone = [model(input_ids=part).logits.float() for part in ids.split(lengths, dim=1)]
    reference = torch.cat(alone, dim=1)
    tolerance = 1e-4 if dtype == torch.float32 else 5e-2
    gaps = {name: float((value - reference).abs().max()) for name, value in logits.items()}
    return {
        "lengths": lengths,
        "dtype": str(dtype).removeprefix("torch."),
        "max_abs_logit_gap_vs_each_sequence_alone": gaps,
        "tolerance": tolerance,
        "agrees": all(gap <= tolerance for gap in gaps.values()),
    }


def gpu_facts() -> dict:
    """The device as torch and as NVML see it (NVML is what `train`'s parent reads), and its
    bf16 matmul rate, the ceiling the training parts are measured against."""
    import torch

    from hydratune.config.environment import nvml_gpus

    name = torch.cuda.get_device_name(0)
    return {
        "name": name,
        "torch_cuda": torch.version.cuda,
        "capability_torch": list(torch.cuda.get_device_capability(0)),
        "capability_nvml": [(gpu.major, gpu.minor) for gpu in nvml_gpus() or []],
        "memory_gib": torch.cuda.get_device_properties(0).total_memory / 2**30,
        "bf16_peak_tflops": next((peak / 1e12 for part, peak in BF16_PEAKS if part in name), None),
        "matmul_bf16_tflops": matmul_flops_per_second(True) / 1e12,
    }


def preflight(kit: Path) -> dict:
    import torch

    cuda = torch.cuda.is_available()
    device, dtype = ("cuda", torch.bfloat16) if cuda else ("cpu", torch.float32)
    result = {"versions": versions(), "imports": imports(), "cuda": cuda}
    result["sdpa_backends"] = sdpa_backends(device, dtype)
    result["packed_parity"] = packed_parity(kit, device, dtype)
    if cuda:
        result["gpu"] = gpu_facts()
    return result


# ------------------------------------------------------------------ the parts
def llama_1b(prefix: str = "model.config_overrides") -> list[str]:
    return [f"++{prefix}.{key}={value}" for key, value in LLAMA_1B_SHAPE.items()]


def lora_overrides(kit: Path, steps: int, *, full: bool = False) -> list[str]:
    """LoRA r16 (or every weight) on the 1B shape, bf16, packed 2,048-token rows of GSM8K, as
    train_throughput --gpu trains hydratune's side."""
    method = ["method=full"] if full else ["method.lora.rank=16", "method.lora.alpha=32"]
    return [
        "+experiment=gsm8k_lora",
        f"model.name={kit / 'smollm2'}",
        "model.random_init=true",
        *llama_1b(),
        f"dataset.path={kit / 'gsm8k'}",
        "dataset.max_length=2048",
        *method,
        "train.gradient_checkpointing=false",
        "train.micro_batch_size=4",
        f"train.max_steps={steps}",
        "eval=[none]",
        "train.sample_prompt=null",
        "train.report_to=[]",
    ]


def part(name: str, command: list[str], limit_s: int, needs=(), reads: str = "run", cuda: bool = True) -> dict:
    return {"name": name, "command": command, "limit_s": limit_s, "needs": list(needs), "reads": reads, "cuda": cuda}


def parts(kit: Path) -> list[dict]:
    """In the order that tells the most soonest; each with its share of the budget in seconds."""
    train = [sys.executable, "-m", "hydratune.commands.train"]
    model = [f"model.name={kit / 'smollm2'}", "model.random_init=true"]
    short = ["train.save_steps=null", "eval=[none]", "train.sample_prompt=null", "train.report_to=[]"]
    lora = lora_overrides(kit, steps=20)
    grpo = [*train, "+experiment=arithmetic_grpo", *model, "train.max_steps=4", *short]
    return [
        part(
            "preflight",
            [sys.executable, str(Path(__file__).resolve()), "--preflight", str(kit)],
            90,
            (),
            "stdout",
            False,
        ),
        part("lora_bf16", [*train, *lora], 120),
        part(
            "qlora_memory",
            [
                *train,
                "+experiment=gsm8k_qlora",
                *model,
                *llama_1b(),
                f"dataset.path={kit / 'gsm8k'}",
                "train.max_steps=6",
                *short,
            ],
            75,
            ["bitsandbytes"],
        ),
        part("full_memory", [*train, *lora_overrides(kit, steps=6, full=True)], 75),
        part("compile", [*train, *lora_overrides(kit, steps=10), "train.compile=layers"], 120),
        part("grpo", grpo, 90, ["trl"]),
        part("grpo_vllm", [*grpo, "method.generation=vllm_colocate"], 90, ["trl", "vllm"]),
    ]


# ------------------------------------------------------------------ running them
def run_command(command: list[str], seconds: float, env: dict) -> tuple[int | None, str, float]:
    """Exit code (None: killed past `seconds`), output, wall seconds. The command runs in a session
    of its own, so a timeout kills its whole process group: torchrun's ranks, compile workers,
    vLLM's engine, not only the process started here."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env, start_new_session=True
        )
        try:
            code = process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            try:
                os.killpg(process.pid, signal.SIGKILL)  # what it left running, or all of it past its time
            except ProcessLookupError:
                pass
            process.wait()
        log.seek(0)
        return code, log.read(), time.perf_counter() - start


def why_skipped(spec: dict, cuda: bool, seconds_left: float) -> str | None:
    if spec["cuda"] and not cuda:
        return "no CUDA device"
    missing = [p for p in spec["needs"] if importlib.util.find_spec(p) is None]
    if missing:
        return f"{', '.join(missing)} not installed" + "".join(
            f" ({NOT_CARRIED[p]})" for p in missing if p in NOT_CARRIED
        )
    if seconds_left < 30:
        return f"out of time: the {BUDGET_SECONDS} s budget was spent"
    return None


def run_part(spec: dict, seconds_left: float, scratch: Path, cuda: bool) -> dict:
    out = {"name": spec["name"], "command": " ".join(spec["command"])}
    why = why_skipped(spec, cuda, seconds_left)
    if why:
        return {**out, "status": "skipped", "why": why}
    run_dir = scratch / spec["name"]
    command = spec["command"] + ([f"hydra.run.dir={run_dir}"] if spec["reads"] == "run" else [])
    env = dict(os.environ, HYDRATUNE_CACHE=str(scratch / "cache"), TORCHINDUCTOR_CACHE_DIR=str(scratch / "inductor"))
    code, text, seconds = run_command(command, min(spec["limit_s"], seconds_left), env)
    out["seconds"] = seconds
    if code is None:
        return {**out, "status": "out of time", "output_tail": text[-4000:]}
    if code != 0:
        return {**out, "status": "failed", "output_tail": text[-4000:]}
    if spec["reads"] == "run":
        return {**out, "status": "ran", "result": run_figures(run_dir)}
    return {**out, "status": "ran", "result": json.loads(text[text.rindex(RESULT) + len(RESULT) :].splitlines()[0])}


def run_figures(run_dir: Path) -> dict:
    """What a run measured, from its run.json: speed, memory against the plan, compile."""
    record = json.loads((run_dir / "run.json").read_text())
    rates = [e["tokens_per_second"] for e in record["log_history"] if "tokens_per_second" in e][2:]
    memory = record["memory"]
    measured, planned = memory.get("measured_peak_bytes"), memory.get("estimated_bytes")
    return {
        "precision": record["precision"],
        "attention": record["plan"].get("attention"),
        "median_tokens_per_second": sorted(rates)[len(rates) // 2] if rates else None,
        "train_flops_per_token": record["plan"].get("train_flops_per_token"),
        "memory": memory,
        "measured_vs_plan": measured / planned if measured and planned else None,
        "first_step_seconds": record["wall_seconds"].get("first_step"),
        "compile": record.get("compile"),
        "wall_seconds": record["wall_seconds"],
        "metrics": record["metrics"],
        "logged_sync": [
            {k: v for k, v in e.items() if "sync" in k} for e in record["log_history"] if any("sync" in k for k in e)
        ],
    }


def utilization(results: dict) -> dict:
    """Each training part's model FLOPs per second against the GPU's published bf16 peak and the
    matmul rate preflight measured."""
    ran = {p["name"]: p.get("result") for p in results["parts"] if p["status"] == "ran"}
    gpu = (ran.get("preflight") or {}).get("gpu") or {}
    out = {}
    for name in ("lora_bf16", "compile", "full_memory"):
        figures = ran.get(name) or {}
        rate, flops = figures.get("median_tokens_per_second"), figures.get("train_flops_per_token")
        if not (rate and flops):
            continue
        achieved = rate * flops / 1e12
        out[name] = {
            "model_tflops": achieved,
            "mfu_vs_published_peak": achieved / gpu["bf16_peak_tflops"] if gpu.get("bf16_peak_tflops") else None,
            "vs_measured_matmul": achieved / gpu["matmul_bf16_tflops"] if gpu.get("matmul_bf16_tflops") else None,
        }
    if (ran.get("compile") or {}).get("median_tokens_per_second") and out.get("lora_bf16"):
        out["compile_speedup"] = (
            ran["compile"]["median_tokens_per_second"] / ran["lora_bf16"]["median_tokens_per_second"]
        )
    return out


def run_all(kit: Path, out: Path, budget: float) -> dict:
    import torch

    cuda = torch.cuda.is_available()  # creates no context: the parts need the GPU's memory, not this process
    deadline = time.monotonic() + budget
    results = {"cuda": cuda, "budget_seconds": budget, "parts": []}
    with tempfile.TemporaryDirectory() as scratch:
        for spec in parts(kit.resolve()):
            results["parts"].append(run_part(spec, deadline - time.monotonic(), Path(scratch), cuda))
            results["utilization"] = utilization(results)
            out.write_text(json.dumps(results, indent=2))
            print(json.dumps({k: v for k, v in results["parts"][-1].items() if k != "output_tail"}), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prepare", type=Path, help="write the kit here and stop")
    parser.add_argument("--wheels", action="store_true", help="with --prepare: fetch the wheels the parts need")
    parser.add_argument("--preflight", type=Path, metavar="KIT", help="run the preflight part alone (the harness does)")
    parser.add_argument("--gsm8k", type=Path, default=ROOT.parent / "shared" / "data" / "gsm8k")
    parser.add_argument("--kit", type=Path, default=ROOT / ".gpu_kit")
    parser.add_argument("--out", type=Path, default=Path("gpu_results.json"))
    parser.add_argument("--budget", type=float, default=BUDGET_SECONDS)
    args = parser.parse_args()
    if args.preflight:
        print(RESULT + json.dumps(preflight(args.preflight)), flush=True)
        return
    if args.prepare:
        prepare_kit(args.prepare, args.gsm8k)
        if args.wheels:
            subprocess.run(fetch_wheels_command(), cwd=ROOT, check=True)
        print(f"kit written to {args.prepare}" + (" and wheels to .whl/" if args.wheels else ""))
        return
    if not (args.kit / "smollm2" / "config.json").is_file():
        raise SystemExit(f"no kit at {args.kit}: run `python bench/gpu_harness.py --prepare {args.kit}` first")
    run_all(args.kit, args.out, args.budget)


if __name__ == "__main__":
    main()
