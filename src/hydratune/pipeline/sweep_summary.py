"""A Hydra callback that keeps a summary of a sweep in its directory, best job first.

After every job (so a sweep that stops half-way, or whose jobs fail, still has one)
it rewrites summary.csv, summary.md and objective.png from the jobs' own records:
each job's overrides, status, objective, eval metrics, train loss, tokens/s, wall
time, and for a failed job its error. A job refused its directory (a rerun into a
sweep's directory, whose job there finished) records nothing: the status there stays.
"""

from __future__ import annotations

import csv
import json
import math
import traceback
from pathlib import Path
from typing import Any

from filelock import FileLock
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from hydratune.atomic_dir import write_json_atomic
from hydratune.pipeline.run_directory import RunDirectoryRefused
from hydratune.run_layout import RunDirectory
from hydratune.training.mlflow_tracking import finish_sweep
from hydratune.url_credentials import has_credentials, strip_credentials


class SweepSummary(Callback):
    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.mode == RunMode.MULTIRUN:  # the launcher has just saved multirun.yaml
            strip_sweep_config(Path(config.hydra.sweep.dir))

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        job_dir = Path(config.hydra.runtime.output_dir)
        if job_return.status == JobStatus.FAILED and isinstance(job_return._return_value, RunDirectoryRefused):
            # Nothing was written there: a rerun refused a finished job's directory, which keeps its status.
            return
        status = {
            "job": int(config.hydra.job.num),
            "overrides": [strip_credentials(o) for o in config.hydra.overrides.task if not o.startswith("hydra.")],
            "status": "completed" if job_return.status == JobStatus.COMPLETED else "failed",
            "objective": job_return._return_value if job_return.status == JobStatus.COMPLETED else None,
            "error": None,
        }
        if job_return.status == JobStatus.FAILED:
            error = job_return._return_value
            status["error"] = strip_credentials("".join(traceback.format_exception_only(type(error), error)).strip())
        write_json_atomic(RunDirectory(job_dir).job_status, status)
        write_summary(Path(config.hydra.sweep.dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:

        write_summary(Path(config.hydra.sweep.dir))
        finish_sweep(Path(config.hydra.sweep.dir))  # the MLflow parent run, when the jobs logged to MLflow


def strip_sweep_config(sweep_dir: Path) -> None:
    """Hydra's launcher saves the sweep's config, overrides as typed, in multirun.yaml: without URL credentials."""
    path = sweep_dir / "multirun.yaml"
    if path.is_file():
        text = path.read_text()
        if has_credentials(text):
            path.write_text(strip_credentials(text))


def _mean_tokens_per_second(log_history: list[dict]) -> float | None:
    rates = [e["tokens_per_second"] for e in log_history if "tokens_per_second" in e][1:]  # the first includes warm-up
    return sum(rates) / len(rates) if rates else None


def collect_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    rows = []
    for status_file in sorted(sweep_dir.glob("*/job_status.json")):
        job = json.loads(status_file.read_text())
        row = {
            "job": job["job"],
            "overrides": " ".join(job["overrides"]),
            "status": job["status"],
            "objective": job["objective"],
            "error": job["error"],
            "run_dir": str(status_file.parent),
        }
        run_file = RunDirectory(status_file.parent).record
        if run_file.is_file():
            record = json.loads(run_file.read_text())
            row["objective_name"] = record["objective"]["name"]
            row["direction"] = record["objective"]["direction"]
            row["train_loss"] = record["metrics"].get("train_loss")
            row["tokens_per_second"] = _mean_tokens_per_second(record.get("log_history", []))
            row["wall_seconds"] = record["wall_seconds"]["total"]
            row.update({k: v for k, v in record["metrics"].items() if "." in k})
        rows.append(row)
    direction = next((r["direction"] for r in rows if r.get("direction")), "minimize")
    sign = -1 if direction == "maximize" else 1

    def rank(row):
        value = row["objective"]
        return (row["status"] != "completed", sign * value if isinstance(value, (int, float)) else math.inf, row["job"])

    return sorted(rows, key=rank)


def write_summary(sweep_dir: Path) -> list[dict[str, Any]]:
    with FileLock(str(sweep_dir / ".summary.lock")):
        rows = collect_rows(sweep_dir)
        if not rows:
            return rows
        columns = ["job", "status", "objective", "overrides"]
        columns += sorted({k for r in rows for k in r if "." in k})
        columns += ["train_loss", "tokens_per_second", "wall_seconds", "error", "run_dir"]
        with open(sweep_dir / "summary.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        (sweep_dir / "summary.md").write_text(_markdown(rows, columns))
        _plot(rows, sweep_dir / "objective.png")
    return rows


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


def _markdown(rows: list[dict], columns: list[str]) -> str:
    shown = [c for c in columns if c != "run_dir"]
    lines = ["# Sweep summary (best first)", "", "| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in shown) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _swept(rows: list[dict]) -> dict[str, list[tuple[str, float]]]:
    """Parameter -> [(value as written, objective)] for parameters that vary between jobs."""
    params: dict[str, list[tuple[str, float]]] = {}
    for r in rows:
        if r["status"] != "completed" or not isinstance(r["objective"], (int, float)):
            continue
        for item in r["overrides"].split():
            key, _, value = item.lstrip("+").partition("=")
            params.setdefault(key, []).append((value, float(r["objective"])))
    return {k: v for k, v in params.items() if len({x for x, _ in v}) > 1}


def _plot(rows: list[dict], path: Path) -> None:
    params = _swept(rows)
    if not params:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(params), figsize=(4 * len(params), 3.2), squeeze=False)
    for ax, (name, points) in zip(axes[0], params.items()):
        try:
            xs = [float(x) for x, _ in points]
            ax.set_xscale("log" if min(xs) > 0 and max(xs) / min(xs) > 20 else "linear")
        except ValueError:  # categorical values
            labels = sorted({x for x, _ in points})
            xs = [labels.index(x) for x, _ in points]
            ax.set_xticks(range(len(labels)), labels)
        ax.scatter(xs, [y for _, y in points])
        ax.set_xlabel(name)
        ax.set_ylabel(rows[0].get("objective_name", "objective"))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
