"""Hydra multirun sweeps on the tiny model: a grid, a sweep with a failing job, and Optuna."""

from __future__ import annotations

import csv
import json
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
    out = subprocess.run([sys.executable, "-m", "hydratune.train", "-m", *QUICK, *args, f"hydra.sweep.dir={sweep_dir}"],
                         capture_output=True, text=True, cwd=REPO, timeout=900, env=dict(os.environ, OMP_NUM_THREADS="1"))
    if check:
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def summary_rows(sweep_dir):
    with open(sweep_dir / "summary.csv") as fh:
        return list(csv.DictReader(fh))


def test_grid_sweep_runs_every_combination_and_summarizes(tmp_path):
    store = f"sqlite:///{tmp_path}/mlflow.db"
    multirun(tmp_path, "optim.lr=1e-3,1e-2", "method.lora.rank=4,8", "train.report_to=[mlflow]", f"train.mlflow.tracking_uri={store}")
    rows = summary_rows(tmp_path)
    assert len(rows) == 4 and {r["status"] for r in rows} == {"completed"}
    for row in rows:
        record = json.loads((tmp_path / row["run_dir"].rsplit("/", 1)[-1] / "run.json").read_text())
        assert float(row["objective"]) == pytest.approx(record["objective"]["value"])
        assert float(row["train_loss"]) == pytest.approx(record["metrics"]["train_loss"])
        spec = record["spec"]
        swept = dict(o.lstrip("+").split("=", 1) for o in row["overrides"].split())
        assert float(swept["optim.learning_rate"]) == spec["optim"]["learning_rate"]
        assert int(swept["method.lora.rank"]) == spec["method"]["lora"]["rank"]
    objectives = [float(r["objective"]) for r in rows]
    assert objectives == sorted(objectives)  # train loss is minimized: best first
    assert (tmp_path / "summary.md").read_text().startswith("# Sweep summary")
    assert (tmp_path / "objective.png").stat().st_size > 1000
    assert_one_parent_mlflow_run(store, tmp_path, rows)


def assert_one_parent_mlflow_run(store, sweep_dir, rows):
    """A sweep is one MLflow parent run, holding the summary, with one finished child per job."""
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
