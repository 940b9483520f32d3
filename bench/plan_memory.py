"""The plan's memory estimate against the measured peak, for full fine-tuning, LoRA and QLoRA
on the embedded SmolLM2-135M (the training bench's batch: 4 packed rows of 512 tokens,
checkpointing off, fp32 on the CPU).

    python bench/plan_memory.py [--steps 4]

Each method trains twice, each time in its own process. The first run is `train` as a user
runs it: the measured peak is run.json's, the peak RSS above the RSS before the model was built.
The second releases glibc's free heap pages after every decoder layer's forward and backward
pass (bench/heap_release.py), so that its RSS follows the tensors alive, which is what the plan
adds up; the difference between the two is memory the allocator keeps, not memory training uses.
On a GPU the peak is `torch.cuda.max_memory_allocated` and only the first run is made.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from train_throughput import HERE, hydratune

METHODS = ("full", "lora", "qlora")
RELEASE_HEAP = f"sys.path.insert(0, {str(HERE)!r}); import heap_release; heap_release.install(); "


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--data", type=Path, default=HERE.parents[1] / "shared" / "data" / "gsm8k")
    args = parser.parse_args()
    import torch

    cpu = not torch.cuda.is_available()
    methods = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in METHODS:
            as_run = hydratune(args.data, args.steps, f"{tmp}/{method}", f"method={method}")
            entry = {
                "plan_gib": as_run["plan_memory_gib"],
                "measured_peak_gib": as_run["measured_peak_gib"],
                "measured_over_plan": as_run["measured_peak_gib"] / as_run["plan_memory_gib"],
                "tokens_per_second": as_run["tokens_per_second"],
            }
            if cpu:
                released = hydratune(
                    args.data, args.steps, f"{tmp}/{method}_released", f"method={method}", prelude=RELEASE_HEAP
                )
                entry |= {
                    "heap_released_peak_gib": released["measured_peak_gib"],
                    "heap_released_over_plan": released["measured_peak_gib"] / released["plan_memory_gib"],
                    "heap_released_tokens_per_second": released["tokens_per_second"],
                }
            methods[method] = entry
            print(method, json.dumps(entry), file=sys.stderr, flush=True)
    print(json.dumps({"steps": args.steps, "device": "cpu" if cpu else "gpu", "methods": methods}, indent=2))


if __name__ == "__main__":
    main()
