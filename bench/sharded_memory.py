"""Per-rank peak memory of full-weight DPO and GRPO on the embedded SmolLM2-135M with 2 processes,
under DDP, FSDP2 and ZeRO-3, with gradient checkpointing off and on, beside the plan's per-device
estimate.

    python bench/sharded_memory.py [--steps 2]

Each run is `train` as a user runs it (the offline arithmetic experiments, full weights, a frozen
reference copy); the measured peak is run.json's: rank 0's peak RSS above its RSS before the model
was built, less the file-backed pages mapped since (on a GPU, torch.cuda.max_memory_allocated).
glibc's mmap threshold is fixed (MALLOC_MMAP_THRESHOLD_), so freed tensors leave the RSS and it
follows the tensors alive, as the GPU figure does: otherwise the free heap glibc keeps after the
first step, which differs between strategies, is counted as if the run used it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

STRATEGIES = ("ddp", "fsdp", "deepspeed_zero3")
METHODS = {
    "dpo": ["+experiment=arithmetic_dpo", "train.micro_batch_size=4"],
    # 2 ranks x 4 completions: one group of 4 per rank, with the KL term's frozen reference copy
    "grpo": [
        "+experiment=arithmetic_grpo",
        "train.micro_batch_size=4",
        "method.num_generations=4",
        "method.beta=0.04",
        "method.max_completion_length=32",
    ],
}


def run(method: str, strategy: str, checkpointing: bool, steps: int, out: Path) -> dict:
    overrides = [
        *METHODS[method],
        "method.weights=full",
        f"sharding={strategy}",
        f"train.max_steps={steps}",
        f"train.gradient_checkpointing={str(checkpointing).lower()}",
        "eval=[none]",
        "train.sample_prompt=null",
        "train.report_to=[]",
        f"hydra.run.dir={out}",
    ]
    subprocess.run(
        [sys.executable, "-m", "hydratune.commands.train", *overrides],
        check=True,
        capture_output=True,
        text=True,
        env=dict(os.environ, HF_HUB_OFFLINE="1", MALLOC_MMAP_THRESHOLD_="131072"),
    )
    memory = json.loads((out / "run.json").read_text())["memory"]
    return {
        "method": method,
        "strategy": strategy,
        "checkpointing": checkpointing,
        "plan_gib": memory["estimated_bytes"] / 2**30,
        "measured_gib": memory["measured_peak_bytes"] / 2**30,
        "measured_over_plan": memory["measured_over_estimate"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in METHODS:
            for checkpointing in (False, True):
                same = []
                for strategy in STRATEGIES:
                    name = f"{method}-{strategy}-{'ckpt' if checkpointing else 'plain'}"
                    same.append(run(method, strategy, checkpointing, args.steps, Path(tmp) / name))
                    print(json.dumps(same[-1]), file=sys.stderr, flush=True)
                for entry in same:
                    entry["vs_ddp"] = entry["measured_gib"] / same[0]["measured_gib"]
                runs += same
    print(json.dumps({"steps": args.steps, "ranks": 2, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
