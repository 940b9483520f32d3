"""Faults injected into multi-process runs, through the `train` console script: killing `train`
or one rank leaves nothing running, and a rendezvous that never comes fails in bounded time."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import psutil
import pytest

from ..conftest import REPO
from .runs import TINY, free_port

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

LONG = [*TINY, "sharding=ddp", "train.max_steps=100000", "optim.warmup_ratio=0"]


def start_train(run_dir, *overrides) -> subprocess.Popen:
    return subprocess.Popen(
        [shutil.which("train"), *overrides, f"hydra.run.dir={run_dir}"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )


def wait_for_ranks(proc: subprocess.Popen, count: int = 2, timeout: float = 240) -> list[psutil.Process]:
    """The rank processes under `train`, once all of them are training (their first log step is written)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        ranks = [p for p in psutil.Process(proc.pid).children(recursive=True) if "rank_worker" in " ".join(p.cmdline())]
        if len(ranks) == count and all(p.cpu_times().user > 8 for p in ranks):
            return ranks
        time.sleep(0.5)
    raise AssertionError("the ranks did not start in time")


def assert_all_gone(processes: list[psutil.Process], timeout: float = 60) -> None:
    def alive(p: psutil.Process) -> bool:
        try:
            return p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.time() + timeout
    while time.time() < deadline and any(alive(p) for p in processes):
        time.sleep(0.5)
    left = [p.pid for p in processes if alive(p)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"still running {timeout:.0f} s later: {left}"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killing_train_stops_every_rank(sig, tmp_path):
    proc = start_train(tmp_path, *LONG)
    ranks = wait_for_ranks(proc)
    proc.send_signal(sig)
    proc.wait(timeout=90)
    assert_all_gone(ranks)
    if sig == signal.SIGTERM:
        assert proc.returncode == 128 + signal.SIGTERM, proc.stderr.read()[-2000:]


def test_a_dying_rank_stops_the_run_with_one_message(tmp_path):
    proc = start_train(tmp_path, *LONG, "sharding.collective_timeout_minutes=1")
    ranks = wait_for_ranks(proc)
    victim = next(p for p in ranks if p.environ().get("RANK") == "1")
    victim.kill()
    _, stderr = proc.communicate(timeout=120)
    assert_all_gone(ranks)
    assert proc.returncode == 1, stderr[-3000:]
    assert f"rank 1 (pid {victim.pid}) was killed by SIGKILL" in stderr, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]


def test_a_rendezvous_that_never_comes_fails_naming_the_missing_node(tmp_path):
    endpoint = f"127.0.0.1:{free_port()}"
    started = time.time()
    proc = start_train(
        tmp_path,
        *TINY,
        "sharding=ddp",
        "sharding.nproc_per_node=1",
        "sharding.nnodes=2",
        f"sharding.rdzv_endpoint={endpoint}",
        "sharding.rendezvous_timeout=5",
    )
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 1, stderr[-3000:]
    assert f"sharding.rdzv_endpoint={endpoint}: 1 node(s) did not come in time; missing nodes: 1" in stderr, stderr[
        -3000:
    ]
    assert "Traceback" not in stderr
    assert time.time() - started < 120
