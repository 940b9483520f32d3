"""Hydra multirun sweeps on the tiny model: a sweep with a failing job, and Optuna. The grid with
its MLflow parent run is examples/sweep's (tests/test_examples.py, check_sweep)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
import yaml

from ..conftest import REPO
from ..training.runs import TINY

pytestmark = pytest.mark.slow

QUICK = [*TINY, "train.max_steps=2", "eval=[none]"]


def multirun(sweep_dir, *args, check=True) -> subprocess.CompletedProcess:
    out = subprocess.run(
        [sys.executable, "-m", "hydratune.commands.train", "-m", *QUICK, *args, f"hydra.sweep.dir={sweep_dir}"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=900,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    if check:
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def summary_rows(sweep_dir):
    with open(sweep_dir / "summary.csv") as fh:
        return list(csv.DictReader(fh))


def test_a_failing_job_is_reported_and_the_others_complete(tmp_path):
    out = multirun(tmp_path, "method.lora.rank=4,0,8", check=False)
    assert out.returncode != 0  # the sweep says a job failed...
    rows = summary_rows(tmp_path)
    assert [r["status"] for r in rows] == ["completed", "completed", "failed"]  # ...and still ran and reported the rest
    failed = rows[-1]
    assert "method.lora.rank=0: must be >= 1" in failed["error"]
    assert (tmp_path / "2" / "run.json").is_file()


def test_optuna_sweep_records_the_best_trial(tmp_path):
    multirun(tmp_path, "+sweep=optuna_lr_rank", "hydra.sweeper.n_trials=3")
    results = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert set(results["best_params"]) == {"++optim.learning_rate", "++method.lora.rank"}
    rows = summary_rows(tmp_path)
    assert len(rows) == 3
    assert results["best_value"] == pytest.approx(min(float(r["objective"]) for r in rows))


def test_a_rerun_sweep_keeps_its_finished_jobs(tmp_path):
    """The sweep again into its directory: every job is refused its finished directory, and summary.csv,
    each job's status and objective stay as they were. Resumed (the way out the refusal names), the
    sweep skips the finished jobs and reports them with their objectives."""
    multirun(tmp_path, "method.lora.rank=4,8")
    summary = (tmp_path / "summary.csv").read_text()
    statuses = {job: (tmp_path / job / "job_status.json").read_text() for job in ("0", "1")}
    assert [r["status"] for r in summary_rows(tmp_path)] == ["completed", "completed"]

    out = multirun(tmp_path, "method.lora.rank=4,8", check=False)
    assert out.returncode != 0 and "already holds a finished run" in out.stderr
    assert "resume it with train.resume=auto" in out.stderr
    assert (tmp_path / "summary.csv").read_text() == summary
    assert {job: (tmp_path / job / "job_status.json").read_text() for job in statuses} == statuses

    out = multirun(tmp_path, "method.lora.rank=4,8", "train.resume=auto")
    assert (
        out.stdout.count("finished this run already: the resumed sweep skips it")
        + out.stderr.count("finished this run already: the resumed sweep skips it")
        == 2
    )
    rows = summary_rows(tmp_path)
    assert [(r["status"], r["objective"]) for r in rows] == [
        (r["status"], r["objective"]) for r in csv.DictReader(summary.splitlines())
    ]
