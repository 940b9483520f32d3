"""Training throughput: `train` vs a tutorial HF Trainer + PEFT script, side by side.

    python bench/train_throughput.py [--steps 8] [--data ../shared/data/gsm8k]

Same model (SmolLM2-135M-Instruct, fp32 on the CPU), data (GSM8K train), LoRA
(r16, alpha 32, all linear layers), 4 rows of up to 512 tokens per step, same
number of steps. hydratune packs rows; the tutorial pads each batch to its longest
row. Reports real (non-pad) tokens/s over steps 2..N, and each process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEAK = "import resource, runpy, sys, atexit; atexit.register(lambda: print('PEAK_RSS_MB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)); "


def run(cmd: list[str]) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(out.stdout[-2000:] + out.stderr[-4000:])
    return out.stdout + out.stderr


def peak_mb(text: str) -> float:
    return float(re.findall(r"PEAK_RSS_MB ([\d.]+)", text)[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--data", type=Path, default=HERE.parents[1] / "shared" / "data" / "gsm8k")
    args = parser.parse_args()

    from hydratune.cache_dirs import cache_root
    from hydratune.models.model_loading import model_location
    from hydratune.config.spec import ModelSpec

    model_dir = model_location(ModelSpec(name="embedded:smollm2-135m-instruct"), cache_root())
    with tempfile.TemporaryDirectory() as tmp:
        peer = run([sys.executable, "-c", PEAK + f"sys.argv = ['x', {model_dir!r}, {str(args.data / 'train.jsonl')!r}, '{args.steps}', '{tmp}/peer']; "
                    f"runpy.run_path({str(HERE / 'tutorial_trainer_peft.py')!r}, run_name='__main__')"])
        peer_result = json.loads(re.findall(r"BENCH_RESULT (.*)", peer)[-1])

        overrides = ["+experiment=gsm8k_lora", f"dataset.path={args.data}", "dataset.max_length=512",
                     "dataset.strip_calculator_annotations=false", "method.lora.rank=16", "method.lora.alpha=32",
                     "train.gradient_checkpointing=false", "train.micro_batch_size=4", f"train.max_steps={args.steps}",
                     "eval=[none]", "train.sample_prompt=null", "train.report_to=[]", f"hydra.run.dir={tmp}/ours"]
        ours = run([sys.executable, "-c", PEAK + f"sys.argv = ['train', *{overrides!r}]; runpy.run_module('hydratune.train', run_name='__main__')"])
        logs = [e for e in json.loads((Path(tmp) / "ours" / "run.json").read_text())["log_history"] if "tokens_per_second" in e]
        timed = logs[1:]
        seconds = sum(e["tokens_per_second"] and (e["tokens_seen"] - prev["tokens_seen"]) / e["tokens_per_second"] for prev, e in zip(logs, timed))
        ours_tps = (timed[-1]["tokens_seen"] - logs[0]["tokens_seen"]) / seconds

    result = {
        "steps": args.steps,
        "tutorial_trainer_peft": {"real_tokens_per_second": peer_result["tokens_per_second"], "peak_rss_mb": peak_mb(peer)},
        "hydratune": {"real_tokens_per_second": ours_tps, "peak_rss_mb": peak_mb(ours)},
        "throughput_ratio": ours_tps / peer_result["tokens_per_second"],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
