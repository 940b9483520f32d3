"""Experiment tracking through `train`: MLflow read back with its client, W&B in offline mode."""

from __future__ import annotations

import glob
import json
import struct

import pytest

from ..training.runs import record, train

pytestmark = pytest.mark.slow

# A password as users type it in a URL: an `@` and a `/` unencoded. Each piece that a rule cutting at the
# first `@` or `/` would leave in place is searched for too.
SECRET = "p@ss/w0rd_3f9a2cZQX"
SECRET_PIECES = (SECRET, "ss/w0rd", "w0rd_3f9a2cZQX")


def assert_holds_no_secret(data: bytes | str, where) -> None:
    data = data.encode() if isinstance(data, str) else data
    for piece in SECRET_PIECES:
        assert piece.encode() not in data, f"{where} holds {piece!r}"


def wandb_history(run_dir) -> list[dict]:
    """The history records of an offline W&B run: its .wandb file is a LevelDB-style log of protobufs."""
    from wandb.proto import wandb_internal_pb2

    (path,) = glob.glob(str(run_dir / "wandb" / "offline-run-*" / "run-*.wandb"))
    raw = open(path, "rb").read()
    block, pos, pending, history = 32768, 7, b"", []  # 7: the ":W&B" header
    while pos + 7 <= len(raw):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos : pos + 7])
        if kind == 0 and length == 0:
            break
        pending += raw[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(pending)
            pending = b""
            if rec.WhichOneof("record_type") == "history":
                history.append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in rec.history.item})
    return history


def assert_same_steps_and_losses(got: list[tuple[int, float]], expected: list[tuple[int, float]]) -> None:
    """Steps exactly, losses to float precision (a tracker may store them as float32 or round-trip JSON)."""
    assert [step for step, _ in got] == [step for step, _ in expected]
    assert [loss for _, loss in got] == pytest.approx([loss for _, loss in expected])


@pytest.fixture
def mlflow_server(tmp_path, tmp_path_factory):
    """A real MLflow tracking server with basic auth (its admin password is SECRET), its store under
    tmp_path; its own config, which holds the password, elsewhere."""
    import os
    import subprocess
    import sys
    import time
    import urllib.request

    from ..training.runs import free_port

    config = tmp_path_factory.mktemp("mlflow-auth")
    (config / "auth.ini").write_text(f"""[mlflow]
default_permission = READ
database_uri = sqlite:///{config}/auth.db
admin_username = admin
admin_password = {SECRET}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
""")
    store, port = tmp_path / "store", free_port()
    store.mkdir()
    env = dict(os.environ, MLFLOW_AUTH_CONFIG_PATH=str(config / "auth.ini"), MLFLOW_FLASK_SERVER_SECRET_KEY="test-only")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--app-name",
            "basic-auth",
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{store}/mlflow.db",
            "--artifacts-destination",
            str(store / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=config,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            break
        except OSError:
            assert time.time() < deadline and server.poll() is None, "the MLflow server did not start"
            time.sleep(0.5)
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=60)


def test_trackers_receive_the_run_and_no_file_holds_a_secret(tmp_path, monkeypatch, mlflow_server):
    """MLflow behind basic auth, its credentials in the tracking URI as typed, a token in another URL
    setting and in HF_TOKEN, TensorBoard and offline W&B too, a checkpoint every step: the run logs
    everything, a refused resume prints no secret, and no file written (run directory, checkpoints,
    event files, the MLflow store, W&B's files, the card) holds any piece of one."""
    from mlflow import MlflowClient

    from ..training.runs import TINY, command

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("HF_TOKEN", SECRET)
    host = mlflow_server.removeprefix("http://")
    run_dir = tmp_path / "run"
    settings = [
        "train.report_to=[tensorboard,mlflow,wandb]",
        f"method.vllm_server_url=https://me:{SECRET}@vllm.example:8000",
        "train.save_steps=1",
        "eval=[loss,gsm8k]",
        "eval.tasks.gsm8k.path=generated:arithmetic",
        "eval.tasks.gsm8k.config_name=null",
        "eval.tasks.gsm8k.max_samples=4",
        "eval.tasks.gsm8k.max_new_tokens=4",
    ]
    train(run_dir, *settings, "train.max_steps=3", f"train.mlflow.tracking_uri=http://admin:{SECRET}@{host}")
    logged = [(e["step"], e["loss"]) for e in record(run_dir)["log_history"] if "loss" in e]
    assert len(logged) == 3

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", SECRET)
    client = MlflowClient(mlflow_server)
    (run,) = client.search_runs([client.get_experiment_by_name("hydratune").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    spec = record(run_dir)["spec"]
    assert float(run.data.params["optim.learning_rate"]) == spec["optim"]["learning_rate"]
    assert run.data.params["model.name"] == spec["model"]["name"]
    assert run.data.params["train.mlflow.tracking_uri"] == mlflow_server  # as recorded: without the credentials
    assert run.data.params["method.vllm_server_url"] == "https://vllm.example:8000"
    assert json.loads((run_dir / "mlflow_run.json").read_text())["tracking_uri"] == mlflow_server
    history = client.get_metric_history(run.info.run_id, "loss")
    assert_same_steps_and_losses([(m.step, m.value) for m in history], logged)
    metrics = record(run_dir)["metrics"]
    assert run.data.metrics["gsm8k.strict_accuracy"] == metrics["gsm8k.strict_accuracy"]
    table = json.loads((run_dir / "eval" / "metrics.json").read_text())["tuned"]["gsm8k"]["metrics"]["strict_accuracy"]
    assert [
        run.data.metrics["gsm8k.strict_accuracy.ci95_low"],
        run.data.metrics["gsm8k.strict_accuracy.ci95_high"],
    ] == table["ci95"]
    assert "base.gsm8k.strict_accuracy" in run.data.metrics
    files = {a.path for a in client.list_artifacts(run.info.run_id)} | {
        a.path for a in client.list_artifacts(run.info.run_id, "eval")
    }
    assert {
        "run.json",
        "spec.json",
        "curves.png",
        "eval/metrics.json",
        "eval/predictions.jsonl",
        "eval/predictions_base.jsonl",
    } <= files
    local = client.download_artifacts(run.info.run_id, "run.json", str(tmp_path / "downloaded"))
    assert json.loads(open(local).read())["metrics"] == metrics

    wandb_logged = [(h["train/global_step"], h["train/loss"]) for h in wandb_history(run_dir) if "train/loss" in h]
    assert_same_steps_and_losses(wandb_logged, logged)

    card = command("hydratune-export", str(run_dir), "--push-to-hub", "me/tiny", env={"HF_HUB_OFFLINE": "1"})
    assert card.returncode == 1 and (run_dir / "merged" / "README.md").is_file()
    assert f"train.mlflow.tracking_uri=http://{host}" in (run_dir / "merged" / "README.md").read_text()
    # Another run's checkpoints (another learning rate), offered with other credentials: refused, silently.
    refused = command(
        "train",
        *TINY,
        *settings,
        "train.max_steps=4",
        "train.resume=auto",
        "optim.learning_rate=1e-3",
        f"train.mlflow.tracking_uri=http://bob:{SECRET}@{host}",
        f"hydra.run.dir={run_dir}",
    )
    assert refused.returncode == 2 and "belongs to another run" in refused.stderr, refused.stderr[-3000:]
    assert_holds_no_secret(refused.stdout + refused.stderr, "the refused resume's output")
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    kinds = {"hydratune-complete.json", "training_args.bin", "mlflow.db"}
    assert kinds <= {path.name for path in written}
    assert any(path.name.startswith("events.out.tfevents") for path in written)
    assert any(path.suffix == ".wandb" for path in written)
    for path in written:  # the store, its artifacts, the W&B files, the run directory, its checkpoints, the card
        assert_holds_no_secret(path.read_bytes(), path)


def test_each_job_of_a_sweep_gets_its_own_wandb_run(tmp_path, monkeypatch):
    """Jobs of a sweep run in one process: each writes its own W&B run into its own directory."""
    import os
    import subprocess
    import sys

    from ..conftest import REPO
    from ..training.runs import TINY

    sweep = tmp_path / "sweep"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "hydratune.commands.train",
            "-m",
            *TINY,
            "train.max_steps=2",
            "train.report_to=[wandb]",
            "optim.learning_rate=1e-3,2e-3",
            f"hydra.sweep.dir={sweep}",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=900,
        env=dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="offline"),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    for job in (sweep / "0", sweep / "1"):
        logged = [(e["step"], e["loss"]) for e in record(job)["log_history"] if "loss" in e]
        wandb_logged = [(h["train/global_step"], h["train/loss"]) for h in wandb_history(job) if "train/loss" in h]
        assert len(logged) == 2
        assert_same_steps_and_losses(wandb_logged, logged)
