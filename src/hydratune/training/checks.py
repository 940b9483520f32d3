"""The training stage's check of a spec: the support matrix, the method's settings, the sharding
strategy, the precision and trackers this machine can run, a DeepSpeed file, a checkpoint to resume.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from hydratune.config.environment import Environment
from hydratune.config.problems import ConfigError, Problem, did_you_mean
from hydratune.config.spec import MethodSpec, RunSpec
from hydratune.training.deepspeed_config import load_user_config
from hydratune.training.support_matrix import (
    LOSS_TYPES,
    SUPPORT_MATRIX,
    chunked_loss_blocked,
    supported,
)


def training_problems(spec: RunSpec, env: Environment) -> list[Problem]:
    return [
        *_method_problems(spec, env),
        *_post_training_problems(spec, env),
        *_sharding_problems(spec, env),
        *_machine_problems(spec, env),
        *_file_problems(spec),
    ]


def _method_problems(spec: RunSpec, env: Environment) -> list[Problem]:
    out = []
    m, strategy = spec.method, spec.sharding.strategy
    for row, key in ((m.weights, f"method.weights={m.weights}"), (m.name, f"method={m.name}")):
        if row in SUPPORT_MATRIX and not supported(row, strategy):
            out.append(
                Problem(
                    f"{key} with sharding={strategy}", "not supported", SUPPORT_MATRIX[row][strategy].split(": ", 1)[1]
                )
            )
    if m.weights == "qlora" and not env.has("bitsandbytes"):
        out.append(
            Problem(
                "method.weights=qlora",
                "needs bitsandbytes, which is not importable",
                "pip install bitsandbytes, or method.weights=lora",
            )
        )
    if spec.optim.name == "adamw_8bit" and not env.has("bitsandbytes"):
        out.append(
            Problem(
                "optim.name=adamw_8bit",
                "needs bitsandbytes, which is not importable",
                "pip install bitsandbytes, or optim.name=adamw",
            )
        )
    if m.weights == "full" and m.lora.use_dora:
        out.append(
            Problem(
                "method.lora.use_dora",
                "DoRA is a LoRA variant and does nothing with method.weights=full",
                "use method.weights=lora",
            )
        )
    if m.weights == "qlora" and m.quant.compute_dtype == "bfloat16" and not env.cuda_bf16:
        out.append(
            Problem(
                "method.quant.compute_dtype=bfloat16", "this machine has no bf16-capable GPU", "use compute_dtype=auto"
            )
        )
    if spec.train.loss_kernel == "chunked" and chunked_loss_blocked(spec):
        out.append(Problem("train.loss_kernel=chunked", chunked_loss_blocked(spec), "use train.loss_kernel=auto"))
    return out


# Sampling and clipping settings only GRPO has: set on another method they would do nothing.
GRPO_ONLY = (
    "epsilon_high",
    "importance_sampling_level",
    "scale_rewards",
    "mask_truncated_completions",
    "num_iterations",
    "steps_per_generation",
    "difficulty_samples",
    "difficulty_max_prompts",
    "group_filter",
    "group_filter_max_rounds",
)


def _grpo_settings_set_elsewhere(m: MethodSpec) -> list[Problem]:
    defaults = MethodSpec()
    return [
        Problem(f"method.{key}={getattr(m, key)}", f"a grpo setting, not {m.name}'s", f"remove method.{key}")
        for key in GRPO_ONLY
        if getattr(m, key) != getattr(defaults, key)
    ]


def _post_training_problems(spec: RunSpec, env: Environment) -> list[Problem]:
    m, t = spec.method, spec.train
    out = [] if m.name == "grpo" else _grpo_settings_set_elsewhere(m)
    if m.name == "sft":
        return out
    if m.loss_type is not None and m.loss_type not in LOSS_TYPES[m.name]:
        out.append(
            Problem(
                f"method.loss_type={m.loss_type}",
                f"not a {m.name} loss",
                did_you_mean(m.loss_type, LOSS_TYPES[m.name]) or f"use one of: {', '.join(LOSS_TYPES[m.name])}",
            )
        )
    if m.precompute_reference and not m.is_preference:
        out.append(
            Problem(
                "method.precompute_reference",
                f"only dpo and kto use precomputed reference log-probs, not {m.name}",
                "remove method.precompute_reference",
            )
        )
    if m.sft_weight and m.name != "dpo":
        out.append(
            Problem(
                "method.sft_weight", f"the SFT term (RPO) is a dpo option, not {m.name}", "remove method.sft_weight"
            )
        )
    if m.dpo_weight != 1.0 and m.name != "dpo":
        out.append(
            Problem(
                "method.dpo_weight",
                f"the preference loss weight is a dpo option, not {m.name}",
                "remove method.dpo_weight",
            )
        )
    elif m.name == "dpo" and m.dpo_weight == 0 and not m.sft_weight:
        out.append(
            Problem(
                "method.dpo_weight=0",
                "with no SFT term (method.sft_weight=0) nothing would be trained",
                "set method.sft_weight=1.0 to train the SFT term alone, or method.dpo_weight above 0",
            )
        )
    if m.name == "kto" and (m.loss_type or "kto") == "kto" and t.micro_batch_size < 2:
        out.append(
            Problem(
                f"train.micro_batch_size={t.micro_batch_size}",
                "KTO estimates its KL term by pairing each prompt with another row's completion in the micro-batch",
                "set train.micro_batch_size=2 or more",
            )
        )
    return out + (_grpo_problems(spec, env) if m.name == "grpo" else [])


def _grpo_problems(spec: RunSpec, env: Environment) -> list[Problem]:
    out = []
    m, t, world = spec.method, spec.train, spec.sharding.world_size
    # One round of sampling feeds steps_per_generation micro-batches on every rank (TRL's generation batch).
    rounds, rounds_key = (
        (m.steps_per_generation, "method.steps_per_generation")
        if m.steps_per_generation
        else (t.gradient_accumulation_steps, "train.gradient_accumulation_steps")
    )
    completions = t.micro_batch_size * rounds * world
    if completions % m.num_generations:
        whole = m.num_generations // math.gcd(t.micro_batch_size * world, m.num_generations)
        out.append(
            Problem(
                f"method.num_generations={m.num_generations}",
                f"the {completions} completions of a sampling round (micro_batch_size x "
                f"{rounds_key.split('.')[1]} x world size) do not split into whole groups",
                f"set {rounds_key}={whole} ({t.micro_batch_size} x {whole} x {world} completions, whole groups of "
                f"{m.num_generations}), or change method.num_generations",
            )
        )
    if m.epsilon_high is not None and m.epsilon_high < m.epsilon:
        out.append(
            Problem(
                f"method.epsilon_high={m.epsilon_high}",
                f"the upper clipping bound is below method.epsilon={m.epsilon} (clip-higher widens it)",
                f"set method.epsilon_high above {m.epsilon} (DAPO: 0.28), or remove it",
            )
        )
    if m.group_filter == "none" and m.group_filter_max_rounds != MethodSpec().group_filter_max_rounds:
        out.append(
            Problem(
                f"method.group_filter_max_rounds={m.group_filter_max_rounds}",
                "bounds the sampling rounds of method.group_filter=spread, and the filter is off",
                "set method.group_filter=spread, or remove method.group_filter_max_rounds",
            )
        )
    return out + _vllm_problems(m, env)


def _vllm_problems(m: MethodSpec, env: Environment) -> list[Problem]:
    out = []
    if m.generation.startswith("vllm") and not (env.cuda and env.has("vllm")):
        out.append(
            Problem(
                f"method.generation={m.generation}",
                "vLLM needs a CUDA GPU and the vllm package",
                "use method.generation=auto (transformers' generate here)",
            )
        )
    if not 0 < m.vllm_gpu_memory_utilization < 1:
        out.append(
            Problem(
                f"method.vllm_gpu_memory_utilization={m.vllm_gpu_memory_utilization}",
                "must be a share of the GPU's memory above 0 and below 1 (training needs the rest)",
                "use e.g. 0.3 (TRL's default), or more with method.vllm_sleep_mode=true",
            )
        )
    out += _difficulty_problems(m)
    if m.generation == "vllm_server" and not m.vllm_server_url:
        out.append(
            Problem(
                "method.vllm_server_url",
                "generation=vllm_server needs the server's address",
                "start `trl vllm-serve --model <model>` and set method.vllm_server_url=http://host:8000",
            )
        )
    return out


def _difficulty_problems(m: MethodSpec) -> list[Problem]:
    """The pre-pass needs two samples at least (one gives a rate of 0 or 1, never kept)."""
    if m.difficulty_samples == 1:
        return [
            Problem(
                "method.difficulty_samples=1",
                "one completion per prompt passes or fails, so no prompt has a rate between 0 and 1 and none is kept",
                "set method.difficulty_samples=2 or more (e.g. method.num_generations), or 0 to turn the pre-pass off",
            )
        ]
    if m.difficulty_max_prompts is not None and not m.difficulty_samples:
        return [
            Problem(
                f"method.difficulty_max_prompts={m.difficulty_max_prompts}",
                "bounds the difficulty pre-pass, which is off (method.difficulty_samples=0)",
                "set method.difficulty_samples (e.g. 8), or remove method.difficulty_max_prompts",
            )
        ]
    return []


def _sharding_problems(spec: RunSpec, env: Environment) -> list[Problem]:
    """The strategy's processes and nodes, and what the strategy needs installed and set."""
    sh = spec.sharding
    procs = f"sharding.nproc_per_node={sh.nproc_per_node}"
    deepspeed = sh.strategy == "deepspeed"
    found = [
        (
            sh.strategy in ("fsdp", "deepspeed", "ddp") and sh.world_size < 2,
            procs,
            f"sharding={sh.strategy} needs at least 2 processes in all",
            "set sharding.nproc_per_node=2 (or more), or sharding=single",
        ),
        (
            sh.strategy == "single" and sh.world_size > 1,
            procs,
            "sharding=single runs one process",
            "use sharding=ddp to run several",
        ),
        (
            sh.node_rank >= sh.nnodes,
            f"sharding.node_rank={sh.node_rank}",
            f"must be below sharding.nnodes={sh.nnodes}",
            "number nodes from 0",
        ),
        (
            sh.nnodes > 1 and not sh.rdzv_endpoint and not env.under_launcher,
            "sharding.rdzv_endpoint",
            "a multi-node run needs a rendezvous endpoint",
            "set sharding.rdzv_endpoint=host:port of node 0",
        ),
        (
            env.cuda and sh.strategy != "single" and env.gpu_count and sh.nproc_per_node > env.gpu_count,
            procs,
            f"this node has {env.gpu_count} GPUs",
            f"set sharding.nproc_per_node={env.gpu_count}",
        ),
        (
            deepspeed and not env.has("deepspeed"),
            "sharding=deepspeed",
            "needs deepspeed, which is not importable",
            "pip install 'hydratune[deepspeed]'",
        ),
        (
            deepspeed and sh.deepspeed.offload_params and sh.deepspeed.stage != 3,
            "sharding.deepspeed.offload_params",
            f"parameter offload needs ZeRO stage 3, not {sh.deepspeed.stage}",
            "set sharding.deepspeed.stage=3",
        ),
        (
            sh.backend == "nccl" and not env.cuda,
            "sharding.backend=nccl",
            "nccl needs CUDA, which this machine lacks",
            "use sharding.backend=auto (gloo on the CPU)",
        ),
    ]
    out = [Problem(key, message, fix) for wrong, key, message, fix in found if wrong]
    out += _slurm_problems(spec, env)
    if sh.strategy == "fsdp" and sh.fsdp.sharding == "hybrid_shard":
        out += _hybrid_problems(spec)
    return out


def _slurm_problems(spec: RunSpec, env: Environment) -> list[Problem]:
    """Under srun, the step's tasks are either the run's processes (one task per rank) or its
    nodes (one task per node, whose `train` starts the node's ranks); anything else would start
    several runs into one directory."""
    sh, tasks = spec.sharding, env.slurm_tasks
    if tasks < 2 or tasks == sh.world_size:
        return []
    if tasks != sh.nnodes:
        return [
            Problem(
                f"sharding.nnodes={sh.nnodes}",
                f"srun started {tasks} tasks for a run of {sh.world_size} process(es) on {sh.nnodes} node(s)",
                f"start one task per process (srun -n {sh.world_size}), or one task per node with "
                f"sharding.nnodes={tasks} (examples/slurm/ has both)",
            )
        ]
    if env.slurm_local:
        return [
            Problem(
                f"sharding.nnodes={sh.nnodes}",
                "srun started several tasks on this node, and one task per node starts the node's processes",
                "start one task per node (srun --ntasks-per-node=1)",
            )
        ]
    if env.slurm_node != sh.node_rank:
        return [
            Problem(
                f"sharding.node_rank={sh.node_rank}",
                f"this task runs on node {env.slurm_node} of the srun step",
                "pass sharding.node_rank=$SLURM_NODEID on each node (examples/slurm/train_per_node.sbatch does)",
            )
        ]
    return []


def _hybrid_problems(spec: RunSpec) -> list[Problem]:
    sh = spec.sharding
    replicas = sh.fsdp.replica_count(sh.nnodes)
    if replicas < 2:
        return [
            Problem(
                "sharding.fsdp.replicas",
                "hybrid_shard needs at least 2 replicas (one per node by default)",
                "set sharding.fsdp.replicas=2 on one node, or use sharding=fsdp",
            )
        ]
    if sh.world_size % replicas or sh.world_size == replicas:
        return [
            Problem(
                f"sharding.fsdp.replicas={replicas}",
                f"{sh.world_size} processes do not split into {replicas} replicas of 2 or more shards",
                f"set sharding.nproc_per_node to a multiple of {2 * replicas // sh.nnodes or 2}",
            )
        ]
    return []


def _machine_problems(spec: RunSpec, env: Environment) -> list[Problem]:
    """What this machine lacks for the run: a GPU for half precision, a kernel compiler for
    train.compile, the trackers' packages."""
    out = []
    precision = spec.train.precision
    if precision in ("bf16", "fp16") and not env.cuda:
        out.append(
            Problem(
                f"train.precision={precision}",
                f"{precision} on the CPU is ~300x slower than fp32 here and unsupported",
                "use train.precision=auto (fp32 on the CPU)",
            )
        )
    elif precision == "bf16" and not env.cuda_bf16:
        out.append(
            Problem("train.precision=bf16", "this GPU does not support bf16", "use train.precision=fp16 or auto")
        )
    if spec.train.compile != "off" and not env.compiler:
        out.append(
            Problem(
                f"train.compile={spec.train.compile}",
                "torch.compile builds its kernels with Triton on a GPU and a C++ compiler on the CPU ($CXX, else g++), "
                "and this machine has neither for its device",
                "pip install triton (GPU) or apt-get install g++ (CPU), or use train.compile=off",
            )
        )
    for tracker, package in (("mlflow", "mlflow"), ("wandb", "wandb")):
        if tracker in spec.train.report_to and not env.has(package):
            out.append(
                Problem(
                    f"train.report_to={tracker}",
                    f"{package} is not installed",
                    f"pip install {package}, or drop it from train.report_to",
                )
            )
    return out


def _deepspeed_file_shape(path: Path) -> list[Problem]:
    """A user's DeepSpeed JSON is an object whose `zero_optimization` (when present) is one: the checks of its
    values read them as such. Unreadable JSON is left to load_user_config, which names the parse error."""
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    key = f"sharding.deepspeed.config_file={path}"
    if not isinstance(config, dict):
        found = type(config).__name__
        return [Problem(key, f"holds a JSON {found}, not an object", 'write one object: {"zero_optimization": {...}}')]
    zero = config.get("zero_optimization", {})
    if not isinstance(zero, dict):
        return [
            Problem(
                key,
                f"zero_optimization is {zero!r}, not an object",
                'write it as an object, e.g. "zero_optimization": {"stage": 2}',
            )
        ]
    return []


def _file_problems(spec: RunSpec) -> list[Problem]:
    """A DeepSpeed JSON of the user's, and a checkpoint to resume from, exist and fit the run."""
    out = []
    ds_file = spec.sharding.deepspeed.config_file
    if spec.sharding.strategy == "deepspeed" and ds_file and not Path(ds_file).is_file():
        out.append(
            Problem(
                f"sharding.deepspeed.config_file={ds_file}",
                "no such file",
                "give the path of a DeepSpeed JSON, or null to generate one",
            )
        )
    elif spec.sharding.strategy == "deepspeed" and ds_file:
        shape = _deepspeed_file_shape(Path(ds_file))  # the values are read only from the right shape
        out += shape
        try:
            if not shape:
                load_user_config(Path(ds_file), spec)
        except ConfigError as error:
            out += error.problems
    resume = spec.train.resume
    if resume and resume != "auto" and not Path(resume).is_dir():
        out.append(
            Problem(
                f"train.resume={resume}",
                "no such checkpoint directory",
                "use train.resume=auto, or the path of a checkpoint-N folder",
            )
        )
    return out
