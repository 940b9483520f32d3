"""MLflow tracking (`train.report_to=[mlflow]`): one MLflow run per hydratune run.

The run is opened before training (its id kept in the run directory, so a resumed run and
the ranks of a relaunch log into the same one), receives every logged step from rank 0
while training, and at the end the evaluation metrics with their intervals and the run's
files: run.json, spec.json, curves.png and the evaluation predictions. A sweep is a parent
run with one child per job (the parent's id kept in the sweep directory).

Everything goes through `MlflowClient` with an explicit run id, never MLflow's global
"active run", so a sweep of jobs in one process cannot log into the wrong run. The
transformers MLflowCallback is not used: it logs only the Trainer's arguments.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Iterable, Optional
from urllib.parse import unquote

from filelock import FileLock

from hydratune.atomic_dir import write_json_atomic
from hydratune.config.spec import RunSpec
from hydratune.run_layout import RunDirectory
from hydratune.url_credentials import split_credentials, without_credentials

log = logging.getLogger(__name__)

PARENT_ID_FILE = "mlflow_parent.json"
DEFAULT_STORE = "outputs/mlflow.db"
SWEEP_TAG = "hydratune.sweep_dir"
# Spec keys whose values are never sent to a tracker (none holds a secret today; a key named
# like one is dropped rather than trusted).
SECRET_KEY = re.compile(r"token$|secret|password|api_key|credential", re.IGNORECASE)
MAX_PARAM_CHARS = 6000  # MLflow's limit on one parameter value
BATCH = 100  # params per log_batch call, MLflow's limit


def enabled(spec: RunSpec) -> bool:
    return "mlflow" in spec.train.report_to


def tracking_uri(spec: RunSpec) -> str:
    """The store, without credentials: a `user:token@` in the URI is handed to MLflow's own
    environment variables (read by its REST client in this process and the ranks it starts)."""
    uri = spec.train.mlflow.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    uri, user, password = split_credentials(uri) if uri else (None, None, None)
    if user:
        os.environ["MLFLOW_TRACKING_USERNAME"] = unquote(user)
    if password:
        os.environ["MLFLOW_TRACKING_PASSWORD"] = unquote(password)
    return uri or f"sqlite:///{(Path.cwd() / DEFAULT_STORE).resolve()}"


def _sqlite_file(uri: str) -> Optional[Path]:
    return Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None


def _client(uri: str):
    from mlflow import MlflowClient

    database = _sqlite_file(uri)
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri)


def _experiment_id(client, name: str, uri: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    database = _sqlite_file(uri)  # artifacts beside the database, not in whatever directory train ran from
    artifacts = (database.parent / "mlartifacts").resolve().as_uri() if database is not None else None
    try:
        return client.create_experiment(name, artifact_location=artifacts)
    except Exception:  # another job of a parallel sweep created it first
        return client.get_experiment_by_name(name).experiment_id


def flat_params(spec: RunSpec) -> dict[str, str]:
    """The resolved spec as `section.key` -> value, secrets left out."""
    out: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif not SECRET_KEY.search(prefix.rsplit(".", 1)[-1]):
            text = json.dumps(value, default=str) if isinstance(value, (list, tuple, dict)) else str(value)
            out[prefix] = text[:MAX_PARAM_CHARS]

    walk("", without_credentials(dataclasses.asdict(spec)))
    return out


def sweep_directory() -> Optional[Path]:
    """The sweep directory when this process runs a Hydra multirun job."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
    except ImportError:
        return None
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return Path(HydraConfig.get().sweep.dir).resolve()


def _parent_run(client, experiment_id: str, uri: str, sweep_dir: Path) -> str:
    """The sweep's parent run, created by its first job (jobs may run in parallel processes)."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(sweep_dir / f"{PARENT_ID_FILE}.lock")):
        path = sweep_dir / PARENT_ID_FILE
        if path.is_file():
            return json.loads(path.read_text())["run_id"]
        run = client.create_run(experiment_id, run_name=sweep_dir.name, tags={SWEEP_TAG: str(sweep_dir)})
        write_json_atomic(path, {"tracking_uri": uri, "run_id": run.info.run_id})
        return run.info.run_id


def start_run(spec: RunSpec) -> Optional[str]:
    """Open (or, for a resumed run, reopen) the run's MLflow run and log its parameters."""
    if not enabled(spec):
        return None
    from mlflow.entities import Param

    uri = tracking_uri(spec)  # the credentials a resumed run's command carries, for the saved store too
    saved = _saved_run(spec.output_dir)
    if saved is not None:
        client, run_id = saved
        client.update_run(run_id, status="RUNNING")
        return run_id
    client = _client(uri)
    experiment_id = _experiment_id(client, spec.train.mlflow.experiment, uri)
    tags = {"hydratune.run_dir": str(spec.output_dir), "mlflow.source.name": "hydratune train"}
    sweep_dir = sweep_directory()
    if sweep_dir is not None:
        tags["mlflow.parentRunId"] = _parent_run(client, experiment_id, uri, sweep_dir)
    run = client.create_run(experiment_id, run_name=spec.output_dir.name, tags=tags)
    params = [Param(k, v) for k, v in flat_params(spec).items()]
    for i in range(0, len(params), BATCH):
        client.log_batch(run.info.run_id, params=params[i : i + BATCH])
    write_json_atomic(RunDirectory(spec.output_dir).mlflow_run, {"tracking_uri": uri, "run_id": run.info.run_id})
    log.info("MLflow run %s in %s (experiment %s)", run.info.run_id, uri, spec.train.mlflow.experiment)
    return run.info.run_id


def _saved_run(run_dir: Path) -> Optional[tuple[Any, str]]:
    path = RunDirectory(run_dir).mlflow_run
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    return _client(saved["tracking_uri"]), saved["run_id"]


def log_metrics(client, run_id: str, metrics: dict[str, Any], step: int) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [
        Metric(key, float(value), now, step)
        for key, value in metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    ]
    for i in range(0, len(batch), 1000):
        client.log_batch(run_id, metrics=batch[i : i + 1000])


def step_logger(run_dir: Path):
    """A TrainerCallback logging every `logging_steps` entry of rank 0 as MLflow metrics at its step."""
    from transformers import TrainerCallback

    class MlflowStepLogger(TrainerCallback):
        def __init__(self) -> None:
            self._run: Optional[tuple[Any, str]] = None

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            if self._run is None:
                self._run = _saved_run(run_dir)
            if self._run is not None:
                log_metrics(*self._run, logs, state.global_step)

    return MlflowStepLogger()


def _interval_metrics(run_dir: Path) -> dict[str, float]:
    """The 95% intervals of the evaluation table, beside the values logged as metrics."""
    path = RunDirectory(run_dir).eval_metrics
    if not path.is_file():
        return {}
    out = {}
    for label, results in json.loads(path.read_text()).items():
        if label not in ("tuned", "base") or not results:
            continue
        for task, result in results.items():
            for metric, value in result["metrics"].items():
                name = f"{'base.' if label == 'base' else ''}{task}.{metric}"
                out[f"{name}.ci95_low"], out[f"{name}.ci95_high"] = value["ci95"]
    return out


def _files(run_dir: Path) -> Iterable[tuple[Path, Optional[str]]]:
    layout = RunDirectory(run_dir)
    for path in (layout.record, layout.spec, layout.plan, layout.curves):
        if path.is_file():
            yield path, None
    for path in sorted(layout.eval.glob("*")) if layout.eval.is_dir() else ():
        if path.suffix in (".json", ".jsonl"):  # the run's own evaluation; a later one (eval/<time>/) is not the run's
            yield path, "eval"


def finish_run(run_dir: Path, metrics: dict[str, Any], step: int) -> None:
    """Log the final metrics (with intervals) and the run's files, and close the MLflow run."""
    saved = _saved_run(run_dir)
    if saved is None:
        return
    client, run_id = saved
    log_metrics(client, run_id, {**metrics, **_interval_metrics(run_dir)}, step)
    for path, folder in _files(run_dir):
        client.log_artifact(run_id, str(path), artifact_path=folder)
    client.set_terminated(run_id, status="FINISHED")


def fail_run(run_dir: Path) -> None:
    saved = _saved_run(run_dir)
    if saved is not None:
        client, run_id = saved
        client.set_terminated(run_id, status="FAILED")


def finish_sweep(sweep_dir: Path) -> None:
    """Attach the sweep's summary to its parent run and close it."""
    path = sweep_dir / PARENT_ID_FILE
    if not path.is_file():
        return
    saved = json.loads(path.read_text())
    client = _client(saved["tracking_uri"])
    for name in ("summary.csv", "summary.md", "objective.png"):
        if (sweep_dir / name).is_file():
            client.log_artifact(saved["run_id"], str(sweep_dir / name))
    client.set_terminated(saved["run_id"], status="FINISHED")
