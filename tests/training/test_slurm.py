"""Through a real Slurm scheduler (the one-node cluster .ci/slurm/start_cluster.sh starts): srun's
tasks as the ranks, the shipped batch scripts, and a submitit sweep."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ..conftest import REPO
from .runs import TINY, record

START = "bash .ci/slurm/start_cluster.sh"
BASE = ["+experiment=quickstart", *TINY, "train.max_steps=2"]
ARGS = [*BASE, "eval=[none]"]
SELF_LAUNCHED = "starting 2 rank(s) on this node"  # train's own agent started the node's processes


@pytest.fixture(scope="module")
def cluster() -> None:
    """The tests need a live cluster; CI starts one (and sets HYDRATUNE_REQUIRE_SLURM, so that a
    cluster that did not come up fails them rather than skipping them)."""
    up = (
        shutil.which("sinfo")
        and subprocess.run(
            ["sinfo", "--noheader", "--responding", "--states=idle,mixed,allocated", "--format=%n"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
    )
    if not up:
        message = f"no Slurm cluster answers here; start the one-node cluster: {START}"
        if os.environ.get("HYDRATUNE_REQUIRE_SLURM"):
            pytest.fail(message)
        pytest.skip(message)


def run(*command: str, cwd: Path = REPO, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        list(command),
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
        env=dict(os.environ, OMP_NUM_THREADS="1", **(env or {})),
    )


def train_script() -> str:
    return shutil.which("train")


@pytest.mark.distributed
def test_srun_tasks_are_the_ranks(cluster, tmp_path):
    out = run("srun", "-N1", "-n2", train_script(), *ARGS, "sharding=ddp", f"hydra.run.dir={tmp_path / 'run'}")
    assert out.returncode == 0, out.stderr[-4000:]
    assert record(tmp_path / "run")["world_size"] == 2
    assert SELF_LAUNCHED not in out.stderr + out.stdout  # the two tasks were the two ranks


def test_srun_tasks_that_are_neither_the_ranks_nor_the_nodes_are_refused(cluster, tmp_path):
    command = [train_script(), *ARGS, "sharding=single", "run.dry_run=true", f"hydra.run.dir={tmp_path / 'run'}"]
    out = run("srun", "-N1", "-n2", *command)
    assert out.returncode == 2, out.stderr[-4000:]
    assert "srun started 2 tasks for a run of 1 process(es) on 1 node(s)" in out.stderr
    assert "start one task per process (srun -n 1)" in out.stderr
    fixed = run("srun", "-N1", "-n1", *command)  # the fix the message gives
    assert fixed.returncode == 0, fixed.stderr[-4000:]


@pytest.mark.distributed
@pytest.mark.parametrize(
    "script,resources,extra",
    [
        ("train_per_task.sbatch", ["--ntasks-per-node=2", "--cpus-per-task=1"], []),
        ("train_per_node.sbatch", ["--cpus-per-task=2"], ["sharding.nproc_per_node=2"]),
    ],
)
def test_a_shipped_batch_script_trains_on_one_node(cluster, tmp_path, script, resources, extra):
    """The scripts ask for two 8-GPU nodes; sbatch's own flags shrink them to this CPU node."""
    log = tmp_path / "slurm.out"
    out = run(
        "sbatch",
        "--wait",
        "--nodes=1",
        "--gpus-per-node=0",
        *resources,
        f"--output={log}",
        str(REPO / "examples" / "slurm" / script),
        *ARGS,
        "sharding=ddp",
        *extra,
        env={"RUN_DIR": str(tmp_path / "run")},
    )
    said = log.read_text() if log.exists() else ""
    assert out.returncode == 0, out.stderr[-2000:] + said[-4000:]
    assert record(tmp_path / "run")["world_size"] == 2
    assert (tmp_path / "run" / "merged" / "config.json").is_file()
    assert (SELF_LAUNCHED in said) == (script == "train_per_node.sbatch"), said[-4000:]


def test_a_sweep_submits_its_jobs_to_slurm(cluster, tmp_path):
    sweep = tmp_path / "sweep"
    out = run(
        train_script(),
        "-m",
        *BASE,
        "eval=[loss]",
        "+sweep=slurm",
        "hydra.launcher.gpus_per_node=0",
        "optim.lr=1e-4,3e-4",
        f"hydra.sweep.dir={sweep}",
    )
    assert out.returncode == 0, out.stderr[-4000:]
    with open(sweep / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["status"] for r in rows) == ["completed", "completed"], rows
    assert all(float(r["loss.eval_loss"]) > 0 for r in rows)
    # submitit's own record of the Slurm jobs it submitted: one folder per array task
    tasks = sorted(p.name.split("_")[1] for p in (sweep / ".submitit").iterdir() if p.is_dir() and "_" in p.name)
    assert tasks == ["0", "1"]
