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


BITSANDBYTES_CHECK = """
import sys
from hydratune.commands.cli import compose_spec
from hydratune.training.upstream_patches import leave_bitsandbytes_unimported

leave_bitsandbytes_unimported(compose_spec(["+experiment=quickstart", *sys.argv[1:]]))
import peft
from peft.tuners.lora import LoraConfig
from transformers.utils import is_bitsandbytes_available

print("bitsandbytes" in sys.modules and sys.modules["bitsandbytes"] is not None, is_bitsandbytes_available())
"""


def test_bitsandbytes_is_imported_only_by_runs_that_use_it():
    """A LoRA run leaves it unimported and unavailable; QLoRA and the 8-bit optimizer get it."""

    def imported(*overrides: str) -> str:
        out = subprocess.run(
            [sys.executable, "-c", BITSANDBYTES_CHECK, *overrides], capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
        return out.stdout.splitlines()[-1]

    assert imported("method=lora") == "False False"
    assert imported("method=qlora") == "True True"
    assert imported("method=lora", "optim=adamw_8bit") == "True True"
