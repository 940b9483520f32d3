"""Preprocessing at scale: `preprocess` vs `datasets.map(batched=True, num_proc=N)` on the same
generated chat rows, at several sizes, to show flat memory, linear time and the worker speed-up.

    python bench/preprocess_scale.py [--rows 20000 80000 320000] [--workers 2] [--repeats 3]

Each measurement runs in a fresh process that loads the tokenizer (the embedded SmolLM2's),
records its resident size, then builds. The sides take turns, `--repeats` times at each size,
and each side's median run (by seconds) is reported with every run's seconds beside it: single
runs of the same build vary widely on a shared machine. Reported: seconds, tokens/s, the peak
RSS above that baseline and the peak anonymous RSS above its own (the parent; RSS also counts
the touched pages of memory-mapped files), and the largest worker's peak RSS. hydratune renders the chat
template, computes assistant-only labels, packs 2048-token rows and writes verified shards;
the peer renders and tokenizes only (its Arrow output is what a user would pack next).
Generated rows are written to bench/generated/ (not in git) and reused.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GENERATED = HERE / "generated"


def _kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class AnonPeak:
    """The peak of the process's anonymous resident memory (RssAnon), sampled every 0.1 s. The
    kernel keeps a high-water mark of the whole RSS only, and that also counts the pages of mapped
    files once touched (shared libraries, datasets' memory-mapped Arrow files), which the kernel
    can drop."""

    def __init__(self) -> None:
        import threading

        self.peak_kib = _kib("RssAnon")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.peak_kib = max(self.peak_kib, _kib("RssAnon"))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak_kib, _kib("RssAnon"))


def measure_one(side: str, data: Path, workers: int, scratch: Path) -> dict:
    """In this process: load the tokenizer, then build, measuring time and memory."""
    from hydratune.cache_dirs import cache_root
    from hydratune.commands.cli import compose_spec
    from hydratune.models.model_loading import load_tokenizer

    spec = compose_spec(
        [
            f"dataset.path={data}",
            "dataset.format=messages",
            "dataset.max_length=2048",
            "dataset.eval_split=null",
            f"dataset.num_proc={workers}",
            "eval=[none]",
            f"run.cache_dir={scratch / 'cache'}",
        ]
    )
    tokenizer = load_tokenizer(spec.model, cache_root())
    tokenizer("warm up")
    baseline = _kib("VmRSS")
    anon_baseline = _kib("RssAnon")
    Path("/proc/self/clear_refs").write_text("5")
    anon = AnonPeak()
    start = time.perf_counter()
    if side == "hydratune":
        from hydratune.data.prepare_data import run_preprocess

        prepared = run_preprocess(spec, tokenizer=tokenizer)
        tokens = prepared.report["train"]["tokens"]
        extra = {"packing_efficiency": prepared.manifest["packing"]["train"]["efficiency"]}
    else:
        import datasets

        rows = datasets.load_dataset("json", data_files=str(data), split="train", cache_dir=str(scratch / "hf"))

        def tokenize(batch):
            texts = [tokenizer.apply_chat_template(m, tokenize=False) for m in batch["messages"]]
            return tokenizer(texts, add_special_tokens=False)

        out = rows.map(
            tokenize, batched=True, num_proc=workers if workers > 1 else None, remove_columns=rows.column_names
        )
        tokens = sum(len(ids) for batch in out.iter(batch_size=4096) for ids in batch["input_ids"])
        extra = {}
    seconds = time.perf_counter() - start
    anon_peak = anon.stop()
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "seconds": seconds,
        "tokens": tokens,
        "tokens_per_second": tokens / seconds,
        "peak_above_baseline_mb": (_kib("VmHWM") - baseline) / 1024,
        "baseline_mb": baseline / 1024,
        "anon_peak_above_baseline_mb": (anon_peak - anon_baseline) / 1024,
        "largest_worker_peak_mb": children / 1024,
        **extra,
    }


def measure(side: str, data: Path, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        out = subprocess.run(
            [sys.executable, __file__, "--one", side, str(data), str(workers), scratch], capture_output=True, text=True
        )
    if out.returncode != 0:
        raise SystemExit(out.stderr[-4000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_runs(runs: list[dict]) -> dict:
    """The run with the median seconds, with every run's seconds listed."""
    median = sorted(runs, key=lambda m: m["seconds"])[(len(runs) - 1) // 2]
    return {**median, "runs_seconds": [round(m["seconds"], 2) for m in runs]}


def measure_sides(sides: list[tuple[str, str, int]], data: Path, repeats: int) -> dict:
    """(name, side, workers) measured in turns, `repeats` rounds; each name's median run."""
    runs: dict[str, list[dict]] = {name: [] for name, _, _ in sides}
    for _ in range(repeats):
        for name, side, workers in sides:
            runs[name].append(measure(side, data, workers))
    return {name: median_runs(r) for name, r in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[20000, 80000, 320000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side at each size (the median is kept)")
    parser.add_argument("--one", nargs=4, metavar=("SIDE", "DATA", "WORKERS", "SCRATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        side, data, workers, scratch = args.one
        print(json.dumps(measure_one(side, Path(data), int(workers), Path(scratch))))
        return

    sys.path.insert(0, str(HERE))
    from generate_chat_rows import write_rows

    results = []
    for count in args.rows:
        data = GENERATED / f"chat_{count}.jsonl"
        if not data.exists():
            write_rows(count, data)
        sides = [
            (f"hydratune_{args.workers}_workers", "hydratune", args.workers),
            (f"datasets_map_{args.workers}_workers", "datasets", args.workers),
        ]
        if count == args.rows[0]:
            sides.append(("hydratune_1_worker", "hydratune", 1))
        row = {"rows": count, **measure_sides(sides, data, args.repeats)}
        results.append(row)
        print(json.dumps(row), flush=True)
    first = results[0]
    summary = {
        "repeats": args.repeats,
        "worker_speedup": first[f"hydratune_{args.workers}_workers"]["tokens_per_second"]
        / first["hydratune_1_worker"]["tokens_per_second"],
        "vs_datasets_map_tokens_per_second": [
            r[f"hydratune_{args.workers}_workers"]["tokens_per_second"]
            / r[f"datasets_map_{args.workers}_workers"]["tokens_per_second"]
            for r in results
        ],
    }
    print(json.dumps({"results": results, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
