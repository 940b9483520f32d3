"""Self-launching: a strategy that needs N local processes relaunches `train` under torchrun.

The parent prepares the data first (so ranks only read the cache), saves the resolved
spec (every override) in the run directory, then runs `python -m torch.distributed.run
... -m hydratune.training.rank_worker <run dir>` and waits. Under torchrun,
accelerate, the deepspeed launcher or an srun with one task per process, the
environment is used as given.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from hydratune.config.spec import RunSpec

log = logging.getLogger(__name__)


def needs_relaunch(spec: RunSpec, under_launcher: bool) -> bool:
    return spec.sharding.world_size > 1 and not under_launcher


def torchrun_command(spec: RunSpec) -> list[str]:
    sh = spec.sharding
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={sh.nproc_per_node}"]
    if sh.nnodes > 1:
        host, _, port = sh.rdzv_endpoint.rpartition(":")
        cmd += [f"--nnodes={sh.nnodes}", f"--node_rank={sh.node_rank}", f"--master_addr={host}", f"--master_port={port}"]
    else:
        cmd += ["--standalone"]
    # The ranks read the resolved spec the parent saved in the run dir: every override, one run dir.
    return cmd + ["-m", "hydratune.training.rank_worker", str(spec.output_dir)]


def relaunch(spec: RunSpec) -> int:
    cmd = torchrun_command(spec)
    log.info("launching %d process(es) on this node: %s", spec.sharding.nproc_per_node, " ".join(cmd))
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // spec.sharding.nproc_per_node)))
    return subprocess.run(cmd, env=env, cwd=Path.cwd()).returncode
