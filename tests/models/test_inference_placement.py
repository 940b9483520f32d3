"""Where the stages after training run: decided once, here with the environment reporting CUDA."""

from __future__ import annotations

import pytest
import torch

from hydratune.models.inference_placement import CPU_FP32, Placement, inference_placement

from ..conftest import cpu_env

GPU = cpu_env(cuda=True, cuda_bf16=True, gpu_count=1)


@pytest.mark.parametrize(
    "precision,dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16), ("fp32", torch.float32)]
)
def test_gpu_runs_after_training_on_the_gpu_in_the_run_precision(precision, dtype):
    placement = inference_placement(GPU, precision)
    assert placement == Placement("cuda", dtype)
    assert placement.load_kwargs() == {"dtype": dtype, "device_map": "cuda"}  # straight onto the GPU


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cpu_stays_fp32_on_the_cpu(precision):
    placement = inference_placement(cpu_env(), precision)
    assert placement == CPU_FP32 == Placement("cpu", torch.float32)
    assert placement.load_kwargs() == {"dtype": torch.float32}  # no device_map: loaded as before
