"""Every benchmark, one after the other, and BENCHMARKS.md regenerated from their output.

    python bench/run_all.py [--quick]

Each benchmark runs its sides side by side in one script and prints JSON; this collects
them and writes the tables. `--quick` runs smaller sizes (fewer steps, rows and problems)
to check the harness; the committed BENCHMARKS.md comes from a full run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def run(script: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, str(HERE / script), *args], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"{script} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    text = "\n" + out.stdout
    return json.loads(text[text.rindex("\n{\n") + 1 :])


def machine() -> str:
    import torch

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    import os

    return (
        f"{len(os.sched_getaffinity(0))} CPU cores ({cpu}), {gpu}, torch {torch.__version__}, Python "
        f"{platform.python_version()}"
    )


def training_table(r: dict) -> list[str]:
    lines = [
        f"Median real tokens/s over steps 3-{r['steps']} (4 rows of <= 512 tokens per step, LoRA r16, fp32), the "
        f"process's "
        f"peak RSS, and the share of this machine's measured fp32 matmul rate ({r['matmul_gflops']:.0f} GFLOP/s) "
        "that the useful training FLOPs reach.",
        "",
        "| side | tokens/s | vs hydratune | peak RSS | matmul rate reached |",
        "|---|---|---|---|---|",
    ]
    for name, s in r["sides"].items():
        lines.append(
            f"| {name} | {s['tokens_per_second']:.1f} | {s['throughput_vs_hydratune']:.2f}x | "
            f"{s['peak_rss_mb'] / 1024:.2f} GB | "
            f"{100 * s['fraction_of_matmul_rate']:.1f}% |"
        )
    ours = r["sides"]["hydratune"]
    ratios = r["ratios"]
    tutorial = r["sides"]["tutorial Trainer+PEFT (padded)"]
    if "padding_share" in tutorial:
        lines += [
            "",
            f"The tutorial's batches were {100 * tutorial['padding_share']:.0f}% padding: removing all of it is worth "
            f"at most "
            f"{1 / (1 - tutorial['padding_share']):.2f}x at the same cost per computed token (packed rows of 512 "
            f"tokens cost "
            "somewhat more per token than its shorter padded ones: attention grows with the row).",
        ]
    lines += [
        "",
        f"hydratune / tutorial: **{ratios['hydratune_vs_tutorial_tokens_per_second']:.2f}x** tokens/s at "
        f"{ratios['hydratune_vs_tutorial_peak_rss']:.2f}x its peak RSS; hydratune / TRL SFTTrainer at its best: "
        f"**{ratios['hydratune_vs_trl_best_tokens_per_second']:.2f}x** tokens/s.",
        f"The plan estimated {ours['plan_memory_gib']:.2f} GiB for hydratune's run; measured peak above the pre-model "
        f"baseline: {ours['measured_peak_gib']:.2f} GiB (ratio "
        f"{ours['measured_peak_gib'] / ours['plan_memory_gib']:.2f}).",
    ]
    return lines


def loss_table(r: dict) -> list[str]:
    lines = [
        f"Forward and backward of the loss over {r['tokens']:,} final hidden states of SmolLM2-135M (576 wide, fp32, a "
        f"frozen "
        f"49,152-row head as under LoRA), {100 * r['supervised']:.0f}% of positions supervised, chunks of "
        f"{r['chunk']}; best of 4.",
        "",
        "| loss | seconds | speed vs plain | max gradient difference vs plain |",
        "|---|---|---|---|",
    ]
    for name, s in r["sides"].items():
        lines.append(
            f"| {name} | {s['seconds']:.2f} | {s['speed_vs_plain']:.2f}x | {s['max_abs_grad_diff_vs_plain']:.1e} |"
        )
    return lines


def plan_table(r: dict) -> list[str]:
    lines = [
        f"The embedded model, the training bench's batch, {r['steps']} steps per run. \"as run\": run.json's measured "
        'peak (RSS above the RSS before the model was built). "heap released": the same run with glibc\'s free heap '
        "pages returned after every decoder layer's forward and backward pass (`bench/heap_release.py`), so the RSS "
        "follows the tensors alive.",
        "",
        "| method | plan | as run | as run / plan | heap released | heap released / plan | tokens/s as run, released |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, m in r["methods"].items():
        released = (
            (
                f"{m['heap_released_peak_gib']:.2f} GiB | {m['heap_released_over_plan']:.2f} | "
                f"{m['tokens_per_second']:.0f}, "
                f"{m['heap_released_tokens_per_second']:.0f}"
            )
            if "heap_released_peak_gib" in m
            else f"- | - | {m['tokens_per_second']:.0f}"
        )
        lines.append(
            f"| {method} | {m['plan_gib']:.2f} GiB | {m['measured_peak_gib']:.2f} GiB | {m['measured_over_plan']:.2f} "
            f"| {released} |"
        )
    return lines


def sharded_memory_table(r: dict) -> list[str]:
    lines = [
        f"Full-weight DPO and GRPO on the embedded model (the offline arithmetic experiments, a frozen reference "
        f"copy), {r['ranks']} processes, {r['steps']} steps; rank 0's measured peak (as run.json measures it, with "
        "glibc's mmap threshold fixed so the RSS follows the tensors alive) beside the plan's per-device estimate.",
        "",
        "| method | checkpointing | strategy | plan | measured | measured / plan | vs DDP |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in r["runs"]:
        lines.append(
            f"| {m['method']} | {'on' if m['checkpointing'] else 'off'} | {m['strategy']} | {m['plan_gib']:.2f} GiB | "
            f"{m['measured_gib']:.2f} GiB | {m['measured_over_plan']:.2f} | {m['vs_ddp']:.2f}x |"
        )
    return lines


def sharded_goals(r: dict, mark) -> list[str]:
    def name(m: dict) -> str:
        return f"{m['method']} {m['strategy']}{' ckpt' if m['checkpointing'] else ''}"

    sharded = [m for m in r["runs"] if m["strategy"] != "ddp"]
    return [
        "| FSDP2 and ZeRO-3 at most 0.7x DDP's per-rank peak (full DPO and GRPO, 2 ranks) | "
        + ", ".join(f"{name(m)} {m['vs_ddp']:.2f}x" for m in sharded)
        + f" | {mark(all(m['vs_ddp'] <= 0.7 for m in sharded))} |",
        "| ... the plan's per-device estimate within 20% of it | measured / estimate: "
        + ", ".join(f"{name(m)} {m['measured_over_plan']:.2f}" for m in r["runs"])
        + f" | {mark(all(0.8 <= m['measured_over_plan'] <= 1.2 for m in r['runs']))} |",
    ]


def preprocessing_table(r: dict) -> list[str]:
    lines = [
        "| rows | side | seconds (median) | every run | tokens/s | peak RSS above baseline | of which anonymous | "
        "largest worker RSS | packing |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in r["results"]:
        for side, m in row.items():
            if side == "rows":
                continue
            packing = f"{100 * m['packing_efficiency']:.2f}%" if "packing_efficiency" in m else "not packed"
            lines.append(
                f"| {row['rows']:,} | {side} | {m['seconds']:.1f} | "
                f"{' / '.join(f'{x:.1f}' for x in m.get('runs_seconds', [m['seconds']]))} | "
                f"{m['tokens_per_second']:,.0f} | "
                f"{m['peak_above_baseline_mb']:.0f} MB | {m['anon_peak_above_baseline_mb']:.0f} MB | "
                f"{m['largest_worker_peak_mb']:.0f} MB | {packing} |"
            )
    s = r["summary"]
    spread = max(run_spread(row) for row in r["results"])
    lines += [
        "",
        f"Workers: {s['worker_speedup']:.2f}x the single-worker rate. hydratune / datasets.map tokens/s: "
        + ", ".join(f"{x:.2f}x" for x in s["vs_datasets_map_tokens_per_second"])
        + f". The slowest run of a side took up to {100 * spread:.0f}% longer than its fastest.",
        "",
        "Where a worker's time goes (cProfile of one worker's 2,048 rows, run by hand): the tokenizer's own "
        "`encode_batch` about four fifths; rendering the chat template once per conversation (plain conversations "
        "through the compiled template directly) under a tenth; reading the format, finding the spans and filling "
        "the arrays about a tenth. The peer calls the same `encode_batch` and `apply_chat_template`. hydratune also "
        "spills, packs and writes shards, after the last batch: for 320,000 rows the shards, built two at a time on "
        "two threads, take about 4-5 s (one at a time: about 7 s), and the packing on lengths about 1 s (the bin "
        "search reuses a row's fill while the counts it depends on stand; finding each fill afresh took 8 s). Both "
        "timed by hand, on the build's lengths and a spill of the same sizes.",
    ]
    return lines


def post_training_table(r: dict) -> list[str]:
    lines = [
        "Each run is the console command as shipped, from the quickstart's SFT run, with only `train.seed` set "
        "(runs of earlier settings are listed as tries, in the notes); held-out answers (greedy, strict `#### N`) "
        "of the start model and of the result on the same generated test problems, 95% Wilson intervals, McNemar's "
        "exact p; the metric the experiment declares primary (`eval.objective`) where it is another, with its "
        "paired test (a permutation test for shares of sampled answers); wall time from the command to its summary.",
        "",
        "| experiment | seed | steps | wall | start | result | solved only by result / start | McNemar p | "
        "declared primary metric, start -> result, paired p |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in r["runs"]:
        start, result, paired = run["start"], run["result"], run["mcnemar"]
        lines.append(
            f"| `{run['experiment']}` | {run['seed']} | {run['steps']} | {run['wall_seconds'] / 60:.1f} min | "
            f"{_share(start)} | {_share(result)} | {paired['only_tuned_correct']} / {paired['only_base_correct']} | "
            f"{paired['p_value']:.2g} | {_primary(run.get('primary'))} |"
        )
    notes = [f"- {run['experiment']}, seed {run['seed']}: {run['note']}." for run in r["runs"] if run.get("note")]
    return lines + ([""] + notes if notes else [])


def _primary(primary: dict | None) -> str:
    """A run's eval.objective where it is not greedy strict accuracy (that one is the columns before)."""
    if not primary or primary["metric"] == "strict_accuracy":
        return "greedy strict accuracy"
    test = primary.get("permutation") or primary["mcnemar"]
    start, result = primary["base"]["value"], primary["tuned"]["value"]
    return f"{primary['metric']}: {100 * start:.1f}% -> {100 * result:.1f}%, p {test['p_value']:.2g}"


def _share(m: dict) -> str:
    return f"{100 * m['value']:.1f}% [{100 * m['ci95'][0]:.1f}, {100 * m['ci95'][1]:.1f}] ({m['correct']}/{m['n']})"


def post_training_goals(r: dict, mark) -> list[str]:
    """Per experiment, its shipped runs (not the tries of earlier settings) against its declared metric."""
    rows = []
    for experiment in sorted({run["experiment"] for run in r["runs"]}):
        runs = [run for run in r["runs"] if run["experiment"] == experiment and not run.get("superseded")]
        goal = f"| `{experiment}` raises its declared held-out metric over its start, p < 0.05, in <= 30 min, 3 seeds"
        if not runs:
            rows.append(f"{goal} | no run of the shipped settings yet | **not met** |")
            continue

        def gain(run: dict) -> tuple[float, float, str]:
            primary = run.get("primary") or {}
            if primary.get("metric", "strict_accuracy") == "strict_accuracy":
                return run["result"]["value"] - run["start"]["value"], run["mcnemar"]["p_value"], "greedy"
            test = primary.get("permutation") or primary["mcnemar"]
            return primary["tuned"]["value"] - primary["base"]["value"], test["p_value"], primary["metric"]

        ok = len(runs) >= 3 and all(
            gain(run)[0] > 0 and gain(run)[1] < 0.05 and run["wall_seconds"] <= 1800 for run in runs
        )
        measured = ", ".join(
            f"seed {run['seed']}: {gain(run)[2]} {100 * gain(run)[0]:+.1f} points, p {gain(run)[1]:.2g}, "
            f"{run['wall_seconds'] / 60:.0f} min"
            for run in runs
        )
        rows.append(f"{goal} | {measured} | {mark(ok)} |")
    return rows


def grpo_step_goal(r: dict, mark) -> str:
    goal = "a GRPO step with the group filter at least as fast per group with spread as plain TRL"
    if "per_spread_group_vs_trl" not in r:  # measured before the filter: per step only
        return f"| {goal} | not yet measured (per step, before the filter: {r['speedup_vs_trl']:.2f}x) | **not met** |"
    ratio = r["per_spread_group_vs_trl"]
    return f"| {goal} | {ratio:.2f}x (per step {r['speedup_vs_trl']:.2f}x) | {mark(ratio >= 1.0)} |"


def grpo_step_table(r: dict) -> list[str]:
    s = r["settings"]
    filtered = "per_spread_group_vs_trl" in r
    lines = [
        f"{r['sides']['hydratune']['steps']} steps of {s['completions_per_step']} completions "
        f"({s['completions_per_step'] // s['num_generations']} prompts x {s['num_generations']}, up to "
        f"{s['max_completion_length']} tokens, temperature {s['temperature']}), LoRA r8, beta {s['beta']}, fp32, from "
        "the quickstart's SFT run; TRL's train_runtime over the steps on both sides. The sides draw the prompts in "
        "different orders, so they sample different completions, and a step's time follows their lengths."
        + ("" if filtered else " Measured before the group filter existed (no groups-with-spread count)."),
        "",
    ]
    if not filtered:
        lines += ["| side | s/step | completions/s | peak RSS |", "|---|---|---|---|"]
        lines += [
            f"| {name} | {side['seconds_per_step']:.1f} | {side['completions_per_second']:.2f} | "
            f"{side['peak_rss_mb'] / 1024:.2f} GB |"
            for name, side in r["sides"].items()
        ]
        return lines + [
            "",
            f"hydratune: **{r['speedup_vs_trl']:.2f}x** TRL's speed per step at {r['memory_vs_trl']:.2f}x its "
            "memory. Both run TRL's step; hydratune samples with one prompt pass per group and the LoRA adapter "
            "folded into the weights (`training/fast_sampling.py`).",
        ]
    lines += [
        "| side | s/step | completions/s | groups with spread | s per group with spread | peak RSS |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {side['seconds_per_step']:.1f} | {side['completions_per_second']:.2f} | "
        f"{side['groups_with_spread']:.0f} | {side['seconds_per_spread_group']:.1f} | "
        f"{side['peak_rss_mb'] / 1024:.2f} GB |"
        for name, side in r["sides"].items()
    ]
    return lines + [
        "",
        f"hydratune: **{r['per_spread_group_vs_trl']:.2f}x** TRL's speed per group with spread, "
        f"{r['speedup_vs_trl']:.2f}x per step, at {r['memory_vs_trl']:.2f}x its memory. Both run TRL's step; "
        "hydratune samples with one prompt pass per group and the LoRA adapter folded into the weights "
        "(`training/fast_sampling.py`), and its group filter trains only on groups whose rewards differ, "
        "sampling a second round of prompts when a step's first has too few.",
    ]


def grpo_sampling_table(r: dict) -> list[str]:
    lines = [
        f"One `generate` of a step's {r['completions']} completions ({r['prompts']} prompts, {r['new_tokens']} new "
        "tokens each) on the start model with a LoRA r8 adapter, as TRL's GRPOTrainer calls it and through "
        "hydratune's fast_sampling, alternating in one process; median of the runs.",
        "",
        "| side | seconds | runs |",
        "|---|---|---|",
    ]
    for side, median in r["median_seconds"].items():
        runs = ", ".join(f"{t:.1f}" for t in r["seconds"][side])
        lines.append(f"| {side} | {median:.2f} | {runs} |")
    return lines + ["", f"hydratune: **{r['speedup']:.2f}x** the sampling speed."]


def compile_goals(t: dict, mark) -> list[str]:
    best_mode, best = max(t["compile"].items(), key=lambda kv: kv[1]["speedup"])
    eager = t["sides"]["hydratune"]["fraction_of_matmul_rate"]
    return [
        f"| train.compile >= 1.15x eager's tokens/s | best: {best_mode} {best['speedup']:.2f}x | "
        f"{mark(best['speedup'] >= 1.15)} |",
        f"| ... reaching > 70% of the matmul rate | {100 * eager * best['speedup']:.0f}% (eager "
        f"{100 * eager:.0f}%) | {mark(eager * best['speedup'] > 0.7)} |",
    ]


def run_spread(row: dict) -> float:
    """How much longer a side's slowest run at this size took than its fastest (0.1: 10%), the most of any side."""
    return max(
        max(m["runs_seconds"]) / min(m["runs_seconds"]) - 1
        for side, m in row.items()
        if side != "rows" and m.get("runs_seconds")
    )


def plan_ratios(plan: dict) -> tuple[dict, dict]:
    """Measured / estimate per method: as run, and with glibc's free heap released (CPU runs only)."""
    as_run = {k: m["measured_over_plan"] for k, m in plan.items()}
    released = {k: m["heap_released_over_plan"] for k, m in plan.items() if "heap_released_over_plan" in m}
    return as_run, released


def within_fifth(ratios: dict) -> bool:
    return all(0.8 <= x <= 1.2 for x in ratios.values())


def in_the_way(results: dict) -> list[str]:
    """For the speed and memory goals above that are not met, what the results show stands in the way."""
    t, p, plan = results["training"], results["preprocessing"], results["plan"]["methods"]
    lines = []
    if "compile" in t and max(m["speedup"] for m in t["compile"].values()) < 1.15 and "step_profile" in results:
        shares = next(iter(results["step_profile"]["sides"].values()))["shares"]  # the first side: default attention
        lines.append(
            f"- train.compile: compiling fuses only what is neither a matmul nor attention, "
            f"{shares['other']:.0%} of an eager step's CPU time (matmuls {shares['matmul']:.0%}, attention "
            f"{shares['attention']:.0%}: the step profile below); were all of it gone, a step would be at most "
            f"{1 / (1 - shares['other']):.2f}x faster."
        )
    behind = [
        (1 / x - 1, run_spread(r))
        for r, x in zip(p["results"], p["summary"]["vs_datasets_map_tokens_per_second"])
        if x < 1.0
    ]
    if behind and all(lag <= spread for lag, spread in behind):
        lines.append(
            "- preprocessing: both sides spend most of their time in the same `encode_batch` of the tokenizer, so "
            "they differ by the peer's own overhead, within a side's run-to-run spread (the table below)."
        )
    if p["summary"]["worker_speedup"] < 1.8:
        lines.append(
            "- 2 workers: the parent's own work does not split across workers: reading the rows and spilling what "
            "comes back, beside both workers on the same two cores, then packing and writing the shards after them."
        )
    as_run, released = plan_ratios(plan)
    if not within_fifth(as_run) and len(released) == len(as_run) and within_fifth(released):
        lines.append(
            "- the plan as run: the plan estimates live memory, and the RSS as run also holds the free heap glibc "
            "keeps; with it released the peak is within 20% of the estimate for every method (the next goal)."
        )
    return ["", "Where a goal above is not met, what stands in the way:", "", *lines] if lines else []


def flat_memory_goal(rows: list[dict], peaks: list[float], mark) -> list[str]:
    """The largest size's peak against the one before it (4x fewer rows)."""
    growth = peaks[-1] / peaks[-2]
    return [
        f"| preprocessing peak flat: {rows[-1]['rows']:,} rows at most 1.25x {rows[-2]['rows']:,} rows | "
        f"{growth:.2f}x | {mark(growth <= 1.25)} |"
    ]


def compile_table(r: dict) -> list[str]:
    lines = [
        "The same run as hydratune's eager side, with `train.compile`: tokens/s against eager, the compile time (the "
        "first step's time beyond eager's, each compiled side starting from an empty inductor cache), the distinct "
        "graphs compiled, and the largest difference of the first "
        f"{next(iter(r.values()))['loss_steps_compared']} losses from eager's (tolerance 1e-4, as "
        "tests/training/test_compile.py holds compiled runs to eager ones).",
        "",
        "| train.compile | vs eager | compile time | graphs | largest loss difference | peak RSS vs eager |",
        "|---|---|---|---|---|---|",
    ]
    for mode, c in r.items():
        lines.append(
            f"| {mode} | {c['speedup']:.2f}x | {c['compile_seconds']:.0f} s | {c['graphs']} | "
            f"{c['max_loss_difference']:.1e} | {c['peak_rss_vs_eager']:.2f}x |"
        )
    return lines


def step_profile_table(r: dict) -> list[str]:
    lines = [
        f"What bounds a step on this CPU: torch.profiler over {r['steps_profiled']} eager steps of the training "
        "bench's hydratune run (after two warm-up steps), each op's self CPU time in one of three groups: matmuls "
        "(mm, addmm, bmm), attention (SDPA's kernels forward and backward) and everything else (elementwise ops "
        "and their backward, copies, the optimizer). Compiling fuses only the last group: matmuls and SDPA run the "
        "same kernels compiled or not. `bench/gpu_harness.py` measures compiling on a GPU.",
        "",
        "| attention | profiled CPU time | matmuls | attention | the rest | largest ops |",
        "|---|---|---|---|---|---|",
    ]
    for name, side in r["sides"].items():
        shares, top = side["shares"], list(side["top_ops"].items())[:4]
        lines.append(
            f"| {name} | {side['profiled_seconds']:.1f} s | {100 * shares['matmul']:.0f}% | "
            f"{100 * shares['attention']:.0f}% | {100 * shares['other']:.0f}% | "
            + ", ".join(f"{op} {100 * x:.0f}%" for op, x in top)
            + " |"
        )
    return lines


def goals(results: dict) -> list[str]:
    """The targets the benchmarks exist to check, each with what was measured."""
    t, p, plan = results["training"], results["preprocessing"], results["plan"]["methods"]
    ratios, tutorial = t["ratios"], t["sides"]["tutorial Trainer+PEFT (padded)"]
    rows = [r for r in p["results"]]
    vs_map = p["summary"]["vs_datasets_map_tokens_per_second"]
    ours_peaks = [
        max(m["peak_above_baseline_mb"] for side, m in r.items() if side.startswith("hydratune")) for r in rows
    ]

    def mark(ok: bool) -> str:
        return "met" if ok else "**not met**"

    speed, memory = ratios["hydratune_vs_tutorial_tokens_per_second"], ratios["hydratune_vs_tutorial_peak_rss"]
    as_run, released = plan_ratios(plan)

    def listed(ratios: dict) -> str:
        return ", ".join(f"{k} {x:.2f}" for k, x in ratios.items())

    return [
        "| goal | measured | |",
        "|---|---|---|",
        f"| training >= 1.7x the tutorial's tokens/s | {speed:.2f}x | {mark(speed >= 1.7)} |",
        f"| ... at no more peak memory than the tutorial | {memory:.2f}x its peak RSS "
        f"({t['sides']['hydratune']['peak_rss_mb'] / 1024:.2f} "
        f"vs {tutorial['peak_rss_mb'] / 1024:.2f} GB) | {mark(memory <= 1.0)} |",
        f"| training >= 1.5x TRL SFTTrainer at its best | {ratios['hydratune_vs_trl_best_tokens_per_second']:.2f}x | "
        f"{mark(ratios['hydratune_vs_trl_best_tokens_per_second'] >= 1.5)} |",
        *(compile_goals(t, mark) if "compile" in t else []),
        "| preprocessing (2 workers) >= 1.0x the tokens/s of datasets.map(num_proc=2) tokenizing, at every size | "
        + ", ".join(f"{r['rows']:,} rows: {x:.2f}x" for r, x in zip(rows, vs_map))
        + f" (median of {p['summary'].get('repeats', 1)} runs per side) | {mark(min(vs_map) >= 1.0)} |",
        *(flat_memory_goal(rows, ours_peaks, mark) if len(rows) >= 3 else []),
        f"| 2 tokenizing workers >= 1.8x one | {p['summary']['worker_speedup']:.2f}x | "
        f"{mark(p['summary']['worker_speedup'] >= 1.8)} |",
        "| preprocessing peak <= 2 GB above the tokenizer's footprint, at every size | "
        + ", ".join(f"{r['rows']:,} rows: {peak:.0f} MB" for r, peak in zip(rows, ours_peaks))
        + f" | {mark(max(ours_peaks) <= 2048)} |",
        f"| the plan's memory estimate within 20% of the measured peak RSS (embedded model) | measured / estimate: "
        f"{listed(as_run)} | "
        f"{mark(within_fifth(as_run))} |",
        *(
            [
                f"| ... of the live memory, glibc's free heap released | measured / estimate: {listed(released)} | "
                f"{mark(within_fifth(released))} |"
            ]
            if released
            else []
        ),
        *(sharded_goals(results["sharded_memory"], mark) if "sharded_memory" in results else []),
        *([grpo_step_goal(results["grpo_step"], mark)] if "grpo_step" in results else []),
        *(post_training_goals(results["post_training"], mark) if "post_training" in results else []),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rows", nargs="+", default=None, help="preprocessing sizes (default 20000 80000 320000)")
    parser.add_argument("--resume", action="store_true", help="keep the results bench/results.json already holds")
    parser.add_argument("--steps", default=None, help="training steps per side (default 10)")
    parser.add_argument("--problems", default=None, help="GSM8K problems generated (default 64)")
    args = parser.parse_args()
    quick = args.quick
    rows = args.rows or (["2000"] if quick else ["20000", "80000", "320000"])
    benchmarks = {
        "training": ("train_throughput.py", "--steps", args.steps or ("4" if quick else "10")),
        "step_profile": ("step_profile.py",),
        "plan": ("plan_memory.py", "--steps", "3" if quick else "4"),
        "sharded_memory": ("sharded_memory.py", "--steps", "2"),
        "loss": ("loss_kernel.py",),
        "preprocessing": ("preprocess_scale.py", "--rows", *rows, "--repeats", "1" if quick else "3"),
        "gsm8k_preprocessing": ("preprocess_gsm8k.py",),
        "evaluation": ("generation_gsm8k.py", "--problems", args.problems or ("8" if quick else "64")),
        "first_step": ("time_to_first_step.py",),
        "grpo_step": ("grpo_step.py", "--steps", "3" if quick else "8"),
        "grpo_sampling": ("grpo_sampling.py", "--repeats", "1" if quick else "3"),
    }
    if not quick:  # the shipped chain as it is: about an hour per seed here
        benchmarks["post_training"] = ("post_training_chain.py", "--seeds", "42", "7", "1234")
    # Each result is saved as soon as it is measured; --resume keeps those already saved.
    saved = HERE / "results.json"
    results = json.loads(saved.read_text()) if args.resume and saved.exists() else {}
    for name, (script, *script_args) in benchmarks.items():
        if name not in results:
            results[name] = run(script, *script_args)
            saved.write_text(json.dumps(results, indent=2))
    g, e, f = results["gsm8k_preprocessing"], results["evaluation"], results["first_step"]
    lines = [
        "# Benchmarks",
        "",
        f"Regenerated by `python bench/run_all.py{' '.join(['', *sys.argv[1:]])}` on {datetime.date.today()}: "
        f"{machine()}."
        + (
            " With --resume the results bench/results.json already held were kept (measured by earlier runs, on "
            "2-core CPU machines of this kind that may differ in CPU model) and only the missing ones measured here."
            if args.resume
            else ""
        ),
        "Each benchmark runs hydratune and the peer a user would otherwise pick in one script, on the same model, data "
        "and settings; ratios matter more than absolute times. Raw figures: `bench/results.json`. "
        "Not yet run on a GPU: `bench/gpu_harness.py` runs the GPU paths and the training bench's `--gpu` sizes in one "
        "command when one is lent.",
        "",
        "## Goals",
        "",
        *goals(results),
        *in_the_way(results),
        "",
        "## Training (`bench/train_throughput.py`)",
        "",
        *training_table(results["training"]),
        "",
        *(
            ["### Compiled training (`train.compile`)", "", *compile_table(results["training"]["compile"]), ""]
            if "compile" in results["training"]
            else []
        ),
        *(
            ["### Where a step goes (`bench/step_profile.py`)", "", *step_profile_table(results["step_profile"]), ""]
            if "step_profile" in results
            else []
        ),
        "## The plan's memory estimate (`bench/plan_memory.py`)",
        "",
        *plan_table(results["plan"]),
        "",
        "## Sharded post-training memory (`bench/sharded_memory.py`)",
        "",
        *sharded_memory_table(results["sharded_memory"]),
        "",
        "## The SFT loss alone (`bench/loss_kernel.py`)",
        "",
        *loss_table(results["loss"]),
        "",
        "## Preprocessing at scale (`bench/preprocess_scale.py`)",
        "",
        "Generated chat rows (OpenAI messages, 1-3 turns, ~690 tokens per row), 2048-token rows, the embedded SmolLM2 "
        "tokenizer. The sides take turns, each run in a fresh process; the median run of each side is shown, with "
        "every run's seconds.",
        "",
        *preprocessing_table(results["preprocessing"]),
        "",
        "## GSM8K preprocessing (`bench/preprocess_gsm8k.py`)",
        "",
        f"{g['rows']:,} rows: hydratune cold {g['hydratune_cold']['seconds']:.1f} s "
        f"({g['hydratune_cold']['tokens_per_second']:,.0f} tokens/s, "
        f"packing {100 * g['hydratune_cold']['packing_efficiency']:.2f}%), cache hit "
        f"{g['hydratune_cache_hit']['seconds']:.2f} s; "
        f"datasets.map {g['datasets_map']['seconds']:.1f} s; ratio {g['speed_ratio_cold']:.2f}x.",
        "",
        "## Evaluation (`bench/generation_gsm8k.py`)",
        "",
        f"{e['problems']} GSM8K test problems, greedy, up to {e['max_new_tokens']} new tokens: one `generate` call per "
        f"problem "
        f"{e['one_at_a_time']['problems_per_second']:.2f} problems/s; hydratune's batched decoding "
        f"{e['hydratune_batched']['problems_per_second']:.2f} problems/s (**{e['speedup']:.1f}x**), "
        f"{e['identical_replies']}/{e['problems']} identical replies.",
        "",
        "## Time to the first training step (`bench/time_to_first_step.py`)",
        "",
        f"`train +experiment=quickstart`: {f['warm_cache_seconds']:.1f} s on a warm cache "
        f"({f['cold_cache_seconds']:.1f} s on a cold one).",
        "",
    ]
    if "grpo_step" in results:
        lines += ["## GRPO step against TRL (`bench/grpo_step.py`)", "", *grpo_step_table(results["grpo_step"]), ""]
    if "grpo_sampling" in results:
        lines += [
            "## GRPO sampling alone (`bench/grpo_sampling.py`)",
            "",
            *grpo_sampling_table(results["grpo_sampling"]),
            "",
        ]
    if "post_training" in results:
        lines += [
            "## The post-training chain (`bench/post_training_chain.py`)",
            "",
            *post_training_table(results["post_training"]),
            "",
        ]
    (ROOT / "BENCHMARKS.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
