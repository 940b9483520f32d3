"""The upstream patches change what they say and nothing else."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
import torch
from accelerate.utils.other import extract_model_from_parallel
from hydratune.training.upstream_patches import import_deepspeed_only_when_used

import_deepspeed_only_when_used()
layer = torch.nn.Linear(2, 2)
assert extract_model_from_parallel(layer) is layer
assert "deepspeed" not in sys.modules, "unwrapping a plain model imported DeepSpeed"

import deepspeed  # a DeepSpeed run imports it first: its engine is unwrapped as before
engine = deepspeed.DeepSpeedEngine.__new__(deepspeed.DeepSpeedEngine)
torch.nn.Module.__init__(engine)
engine.module = layer
assert extract_model_from_parallel(engine) is layer
print("ok")
"""


def test_deepspeed_is_imported_only_by_runs_that_use_it():
    # a fresh interpreter: the test process may have imported DeepSpeed already
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.splitlines()[-1] == "ok", out.stdout[-2000:] + out.stderr[-3000:]
