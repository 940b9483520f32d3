"""`train`'s parent, which prepares the data and launches the ranks, never starts CUDA: a CUDA
context there would hold GPU memory the ranks need for the whole run. Checked on this CPU with
torch.cuda reporting two GPUs and every call that starts CUDA patched to fail."""

from __future__ import annotations

import pytest
import torch

from hydratune.config import environment
from hydratune.pipeline import run_training as pipeline

from ..conftest import cpu_env
from .runs import TINY

STARTS_CUDA = ["init", "_lazy_init", "current_device", "get_device_properties", "get_device_capability"]


@pytest.fixture
def two_gpus(monkeypatch):
    """torch.cuda says two GPUs are here; anything that would start CUDA fails the test."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    h100 = environment.NvmlGpu(9, 0, 80 * 2**30)
    monkeypatch.setattr(environment, "nvml_gpus", lambda: [h100, h100])
    for name in [*STARTS_CUDA, "is_bf16_supported"]:

        def starts_cuda(*args, _name=name, **kwargs):
            raise AssertionError(f"the parent called torch.cuda.{_name}, which starts CUDA")

        monkeypatch.setattr(torch.cuda, name, starts_cuda)
    environment.detect_environment.cache_clear()
    yield
    environment.detect_environment.cache_clear()


def test_the_environment_is_probed_without_starting_cuda(two_gpus, monkeypatch):
    env = environment.detect_environment()
    assert env.cuda and env.cuda_bf16 and env.gpu_count == 2 and env.gpu_memory_bytes == 80 * 2**30
    gpus = [environment.NvmlGpu(9, 0, 80 * 2**30), environment.NvmlGpu(7, 5, 16 * 2**30)]
    monkeypatch.setattr(environment, "nvml_gpus", lambda: gpus)
    environment.detect_environment.cache_clear()
    assert not environment.detect_environment().cuda_bf16  # a pre-Ampere GPU among them: no bf16


def test_the_launching_parent_prepares_and_launches_without_starting_cuda(two_gpus, monkeypatch, tmp_path):
    """The parent's whole path to the launch: claim, plan, preprocess, check the rows, resume, launch."""
    from hydratune.commands.cli import compose_spec

    gpu = cpu_env(cuda=True, cuda_bf16=True, gpu_count=2)
    spec = compose_spec([*TINY, "sharding=ddp", "eval=[none]"], output_dir=str(tmp_path / "run"), env=gpu)
    launched = []
    monkeypatch.setattr(pipeline, "relaunch", lambda s: launched.append(s.sharding.world_size))
    monkeypatch.setattr(pipeline, "finish_run", lambda *a, **k: "finished")
    assert pipeline.run_training(spec) == "finished"
    assert launched == [2] and spec.train.precision in ("bf16", "auto")
