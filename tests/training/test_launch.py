"""What `train` hands the ranks it starts, tested without starting them (torchrun's `run` recorded)."""

from __future__ import annotations

import json
import os

from hydratune.commands.cli import compose_spec
from hydratune.url_credentials import SECRET_SETTINGS

from ..conftest import cpu_env


def test_a_later_sweep_job_does_not_inherit_an_earlier_jobs_credentials(monkeypatch, tmp_path):
    """A sweep runs its jobs in one process: the second job's ranks see only its own settings, and
    nothing is left in the environment once each job's ranks are done."""
    import torch.distributed.run

    from hydratune.training.launch import LAUNCHER_PID, relaunch

    for name in (LAUNCHER_PID, "OMP_NUM_THREADS"):  # relaunch sets them; restored after the test
        monkeypatch.setenv(name, os.environ.get(name, ""))
    seen = []
    monkeypatch.setattr(torch.distributed.run, "run", lambda args: seen.append(os.environ.get(SECRET_SETTINGS)))
    monkeypatch.delenv(SECRET_SETTINGS, raising=False)
    common = ["model=tiny_llama", "sharding=ddp", "sharding.nproc_per_node=2"]
    first = compose_spec(
        [*common, "method.vllm_server_url=https://me:p@ss/w0rdZQX@vllm:8000", f"hydra.run.dir={tmp_path / '0'}"],
        env=cpu_env(),
    )
    second = compose_spec([*common, f"hydra.run.dir={tmp_path / '1'}"], env=cpu_env())
    relaunch(first)
    assert os.environ.get(SECRET_SETTINGS) is None
    relaunch(second)
    assert json.loads(seen[0]) == {"method.vllm_server_url": "https://me:p@ss/w0rdZQX@vllm:8000"}
    assert seen[1] is None and os.environ.get(SECRET_SETTINGS) is None
