"""Where a model runs after training: the merge, the sample reply, evaluation, the harness.

On a GPU machine every stage after training loads onto the GPU in the run's precision: on the
CPU an 8B model in fp32 needs 32 GB of host memory and decodes for hours. On the CPU nothing
changes: fp32 (bf16 matmuls are far slower there than fp32 on CPUs without AVX-512 BF16).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from hydratune.config.environment import Environment

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Placement:
    device: str  # "cpu", or "cuda": transformers reads it as this process's GPU (cuda:LOCAL_RANK)
    dtype: torch.dtype

    @property
    def device_map(self) -> str | None:
        """What from_pretrained gets as device_map: the weights load straight onto the GPU, never
        whole into host memory first; None on the CPU, where from_pretrained loads anyway."""
        return None if self.device == "cpu" else self.device

    def load_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"dtype": self.dtype}
        if self.device_map is not None:
            kwargs["device_map"] = self.device_map
        return kwargs


CPU_FP32 = Placement("cpu", torch.float32)


def inference_placement(env: Environment, precision: str) -> Placement:
    """The GPU in the run's resolved precision (train.precision: fp32, bf16 or fp16) where CUDA is
    present; the CPU in fp32 otherwise."""
    if not env.cuda:
        return CPU_FP32
    return Placement("cuda", DTYPES[precision])
