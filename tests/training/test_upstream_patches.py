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
from hydratune.training.upstream_patches import import_bitsandbytes_only_if_used

import_bitsandbytes_only_if_used(compose_spec(["+experiment=quickstart", *sys.argv[1:]]))
imported_at_start = sys.modules.get("bitsandbytes") is not None
import peft
from peft.tuners.lora import LoraConfig
from transformers.utils import is_bitsandbytes_available

print(imported_at_start, sys.modules.get("bitsandbytes") is not None, is_bitsandbytes_available())
"""


def test_bitsandbytes_is_imported_only_by_runs_that_use_it():
    """A LoRA run leaves it unimported and unavailable, whether or not peft imports it with itself
    (peft 0.21 does, 0.22 does not); QLoRA and the 8-bit optimizer import it at start, before the
    run's memory baseline, and peft and transformers see it."""

    def imported(*overrides: str) -> str:
        out = subprocess.run(
            [sys.executable, "-c", BITSANDBYTES_CHECK, *overrides], capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
        return out.stdout.splitlines()[-1]

    assert imported("method=lora") == "False False False"
    assert imported("method=qlora") == "True True True"
    assert imported("method=lora", "optim=adamw_8bit") == "True True True"


FSDP2_CHECK = """
import os
import sys

os.environ["ACCELERATE_USE_FSDP"] = "true"

import torch
from torch.distributed.fsdp import FSDPModule
from torch.distributed.tensor import DTensor

from hydratune.training.upstream_patches import (
    enable_fsdp_on_cpu,
    gather_fsdp2_for_generation,
    shard_reference_per_layer,
)

enable_fsdp_on_cpu()
if sys.argv[1] == "patched":
    shard_reference_per_layer()
    gather_fsdp2_for_generation(reshard_after_forward=True)
from accelerate import Accelerator
from accelerate.utils import FullyShardedDataParallelPlugin
from transformers import LlamaConfig, LlamaForCausalLM
import trl.trainer.dpo_trainer
from trl.distributed import DistributedBackend

plugin = FullyShardedDataParallelPlugin(
    fsdp_version=2,
    auto_wrap_policy="transformer_based_wrap",
    transformer_cls_names_to_wrap=["LlamaDecoderLayer"],
    reshard_after_forward=True,
)
accelerator = Accelerator(cpu=True, fsdp_plugin=plugin)
torch.manual_seed(0)
config = LlamaConfig(
    vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2
)
reference = trl.trainer.dpo_trainer.prepare_fsdp(LlamaForCausalLM(config), accelerator)
units = sum(isinstance(m, FSDPModule) for m in reference.modules())
ids = torch.tensor([[1, 2, 3, 4]])
weight = lambda: reference.model.layers[0].mlp.up_proj.weight
with torch.no_grad():
    plain = reference(ids).logits
    with DistributedBackend(accelerator).summon_full_params(reference, recurse=False):
        gathered = reference(ids).logits
        kept_gathered = not isinstance(weight(), DTensor)
    sharded_after = isinstance(weight(), DTensor)
    again = reference(ids).logits
same = torch.equal(plain, gathered) and torch.equal(plain, again)
with open(os.path.join(sys.argv[2], os.environ["RANK"]), "w") as out:  # ranks share one stdout
    print(units, kept_gathered, sharded_after, same, file=out)
"""


def test_fsdp2_reference_is_sharded_per_layer_and_generation_gathers_once(tmp_path):
    """With 2 real ranks: TRL shards a reference model at its root only (one unit) and re-gathers
    every layer for each new token; patched, each decoder layer is its own unit, and inside TRL's
    generation context the units stay gathered after their forward and are sharded again at its
    end. The logits are the same either way."""
    script = tmp_path / "check.py"
    script.write_text(FSDP2_CHECK)

    def result(variant: str) -> list[str]:
        results = tmp_path / variant
        results.mkdir()
        out = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
            + [str(script), variant, str(results)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
        return [(results / rank).read_text().strip() for rank in ("0", "1")]

    # per rank: units, kept gathered inside the generation context, sharded after it, logits unchanged
    assert result("original") == ["1 False True True"] * 2
    assert result("patched") == ["4 True True True"] * 2
