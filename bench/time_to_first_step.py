"""Time from typing `train` to its first training step, on a warm cache (data shards and the
converted model already built by an earlier run of the same command).

    python bench/time_to_first_step.py

The README's main job (`train +experiment=quickstart`), cut to 2 steps without evaluation.
The clock starts before the process does and stops when the first step's log line appears.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time


def first_step_seconds(run_dir: str, cache: str) -> float:
    cmd = [
        "train",
        "+experiment=quickstart",
        "train.max_steps=2",
        "eval=[none]",
        "train.sample_prompt=null",
        f"run.cache_dir={cache}",
        f"hydra.run.dir={run_dir}",
    ]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = None
    for line in proc.stdout:
        if seen is None and "'loss':" in line:
            seen = time.perf_counter() - start
    if proc.wait() != 0 or seen is None:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode})")
    return seen


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cold = first_step_seconds(f"{tmp}/cold", f"{tmp}/cache")
        warm = first_step_seconds(f"{tmp}/warm", f"{tmp}/cache")
    print(json.dumps({"cold_cache_seconds": cold, "warm_cache_seconds": warm}, indent=2))


if __name__ == "__main__":
    main()
