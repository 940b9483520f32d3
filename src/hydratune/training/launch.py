"""Self-launching: a strategy that needs N local processes runs them under torchrun's agent.

The parent prepares the data first (so ranks only read the cache), saves the resolved
spec (every override) in the run directory, then runs torch.distributed.run's elastic
agent in this very process: it starts `python -m hydratune.training.rank_worker <run
dir>` once per local rank and waits. Keeping the agent in-process leaves no launcher
process in between to orphan: SIGTERM, SIGINT or SIGHUP to `train` reach the agent's
handlers, which stop every rank before `train` exits; a SIGKILLed `train` takes its
ranks down through their parent-death signal (rank_worker). When a rank fails, the
agent stops the others and `train` exits with one message naming the rank.

Under torchrun, accelerate, the deepspeed launcher or an srun with one task per
process, the environment is used as given.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
import time
from datetime import timedelta
from pathlib import Path

from hydratune.config.spec import RunSpec
from hydratune.disk_space import NEARLY_FULL_BYTES, DiskFullError, free_bytes, is_disk_full
from hydratune.errors import HydratuneError
from hydratune.run_layout import RunDirectory
from hydratune.url_credentials import passed_to_ranks, settings_with_credentials

log = logging.getLogger(__name__)

LAUNCHER_PID = "HYDRATUNE_LAUNCHER_PID"  # rank_worker dies with this process
_HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class LaunchError(HydratuneError):
    """The ranks could not start or one of them failed; the message says which and why."""

    exit_code = 1


def needs_relaunch(spec: RunSpec, under_launcher: bool) -> bool:
    return spec.sharding.world_size > 1 and not under_launcher


def torchrun_args(spec: RunSpec) -> list[str]:
    sh = spec.sharding
    args = [f"--nproc_per_node={sh.nproc_per_node}", "--max_restarts=0", "--monitor_interval=1"]
    if sh.nnodes > 1:
        host, port = split_endpoint(sh.rdzv_endpoint)
        args += [
            f"--nnodes={sh.nnodes}",
            f"--node_rank={sh.node_rank}",
            f"--master_addr={host}",
            f"--master_port={port}",
            f"--rdzv_conf=timeout={sh.rendezvous_timeout}",
        ]
    else:
        args += ["--standalone"]
    # The ranks read the resolved spec the parent saved in the run dir: every override, one run dir.
    return args + ["-m", "hydratune.training.rank_worker", str(spec.output_dir)]


def split_endpoint(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return host, int(port)


def relaunch(spec: RunSpec) -> None:
    """Run this node's ranks and wait for them; LaunchError with one message when they fail."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    sh = spec.sharding
    if sh.nnodes > 1:
        wait_for_nodes(spec)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // sh.nproc_per_node)))
    os.environ[LAUNCHER_PID] = str(os.getpid())
    log.info("starting %d rank(s) on this node (node %d of %d)", sh.nproc_per_node, sh.node_rank, sh.nnodes)
    previous = {sig: signal.getsignal(sig) for sig in _HANDLED}
    try:
        with passed_to_ranks(settings_with_credentials(dataclasses.asdict(spec))):  # spec.json holds them stripped
            run(parse_args(torchrun_args(spec)))
    except ChildFailedError as error:
        raise LaunchError(describe_failure(error, spec.output_dir)) from None
    except SignalException as stop:  # the agent has stopped every rank already
        log.error("stopped by %s; every rank was stopped", stop.sigval.name)
        raise SystemExit(128 + int(stop.sigval)) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def describe_failure(error, run_dir: Path) -> str:
    """One message for the ranks that failed, first failure first, with each rank's cause."""
    causes = []
    for rank, failure in sorted(error.failures.items(), key=lambda item: item[1].timestamp):
        traceback_file = RunDirectory(run_dir).errors / f"rank{rank}.txt"
        if failure.exitcode < 0:
            cause = f"was killed by {failure.signal_name()}"
        elif traceback_file.is_file():
            last = traceback_file.read_text().strip().splitlines()[-1]
            cause = f"failed with {last} (traceback: {traceback_file})"
        else:
            cause = f"exited with code {failure.exitcode}"
        causes.append(f"rank {rank} (pid {failure.pid}) {cause}")
    message = "training failed: " + "; ".join(causes) + "; the other ranks were stopped"
    if any(is_disk_full(Exception(cause), run_dir) for cause in causes) or free_bytes(run_dir) < NEARLY_FULL_BYTES:
        message += f"; {DiskFullError(run_dir).describe().removeprefix('Error: ')}"
    return message


# ------------------------------------------------------------------ multi-node
def wait_for_nodes(spec: RunSpec) -> None:
    """Meet the other nodes at the rendezvous endpoint before starting any rank.

    Node 0 serves a small store on the endpoint; each node checks in under its rank.
    Every 10 s the wait is logged, naming the nodes still missing; after
    `sharding.rendezvous_timeout` seconds it fails with the endpoint and the missing
    nodes. The store is closed before torchrun's own rendezvous binds the same port.
    """
    from torch.distributed import TCPStore

    sh = spec.sharding
    host, port = split_endpoint(sh.rdzv_endpoint)
    deadline = time.monotonic() + sh.rendezvous_timeout
    others = [r for r in range(sh.nnodes) if r != sh.node_rank]
    where = f"sharding.rdzv_endpoint={sh.rdzv_endpoint}"
    hint = (
        "start `train` with the same configuration and sharding.node_rank=<rank> on each node, or raise "
        "sharding.rendezvous_timeout"
    )

    def remaining() -> float:
        return deadline - time.monotonic()

    if sh.node_rank == 0:
        store = TCPStore(
            host, port, is_master=True, wait_for_workers=False, timeout=timedelta(seconds=sh.rendezvous_timeout)
        )
    else:
        store = _connect(host, port, remaining, where, hint)
    store.set(f"hydratune/node/{sh.node_rank}", socket.gethostname())
    if sh.node_rank == 0:
        _await_keys(store, {r: f"hydratune/node/{r}" for r in others}, remaining, where, hint, "to join")
        store.set("hydratune/go", "1")
        _await_keys(store, {r: f"hydratune/left/{r}" for r in others}, remaining, where, hint, "to leave the check-in")
        del store  # closes the server, so torchrun can bind the port
    else:
        _await_keys(store, {0: "hydratune/go"}, remaining, where, hint, "to start")
        store.set(f"hydratune/left/{sh.node_rank}", "1")
        _await_closed(
            store, remaining
        )  # else this node's torchrun could reach the check-in store, not node 0's torchrun
    log.info("all %d nodes joined at %s", sh.nnodes, sh.rdzv_endpoint)


def _await_closed(store, remaining) -> None:
    """Wait until node 0 has closed the check-in store (the connection to it fails)."""
    while remaining() > 0:
        try:
            store.check(["hydratune/go"])
        except (RuntimeError, OSError):  # DistNetworkError: the server is gone
            return
        time.sleep(0.2)


def _connect(host: str, port: int, remaining, where: str, hint: str):
    from torch.distributed import TCPStore

    while True:
        try:
            return TCPStore(host, port, is_master=False, timeout=timedelta(seconds=max(1.0, min(10.0, remaining()))))
        except (RuntimeError, OSError):  # node 0 not up yet (DistStoreError is a RuntimeError)
            if remaining() <= 0:
                raise LaunchError(
                    f"{where}: node 0 did not open the rendezvous in time; missing nodes: 0 ({hint})"
                ) from None
            log.info("waiting for node 0 at %s:%d (%.0f s left)", host, port, remaining())


def _await_keys(store, keys: dict[int, str], remaining, where: str, hint: str, what: str) -> None:
    last_log = 0.0
    while True:
        missing = [rank for rank, key in keys.items() if not store.check([key])]
        if not missing:
            return
        if remaining() <= 0:
            names = ", ".join(map(str, missing))
            raise LaunchError(f"{where}: {len(missing)} node(s) did not come in time; missing nodes: {names} ({hint})")
        if time.monotonic() - last_log >= 10:
            log.info(
                "waiting for node(s) %s %s at %s (%.0f s left)",
                ", ".join(map(str, missing)),
                what,
                where.split("=", 1)[1],
                remaining(),
            )
            last_log = time.monotonic()
        time.sleep(0.2)
