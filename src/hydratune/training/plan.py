"""The plan printed before every run: will it fit, and what will it cost?

Parameter counts are exact: the model is built on the meta device (no weights
are read). Memory and FLOPs are estimates from the formulas below, per device,
for the chosen method, precision and sharding.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from hydratune.atomic_dir import write_json_atomic
from hydratune.cache_dirs import cache_root
from hydratune.config.environment import Environment, detect_environment
from hydratune.config.problems import ConfigError, Problem
from hydratune.config.spec import RunSpec
from hydratune.models.attention_choice import PACKED_SDPA, resolve_attention
from hydratune.models.model_loading import load_model_config
from hydratune.run_layout import RunDirectory
from hydratune.training.support_matrix import (
    CHUNK_TOKENS,
    chunked_loss_blocked,
    rescaled_logits,
    resolve_generation,
)
from hydratune.url_credentials import without_credentials

GIB = 1024**3


@dataclass(frozen=True)
class ModelShape:
    total_params: int
    embedding_params: int  # input embeddings and an untied output head
    linear_params: int  # inside decoder layers: what 4-bit quantization shrinks
    lora_params: int  # what a LoRA of the spec's rank adds on the target modules
    num_layers: int
    hidden_size: int
    kv_size: int
    intermediate_size: int
    vocab_size: int
    decoder_layer_class: str
    num_heads: int = 1
    rescales_logits: bool = False  # softcapping or a logit scale: the chunked loss does not apply


@dataclass(frozen=True)
class MemoryEstimate:
    weights: float
    gradients: float
    optimizer: float
    activations: float
    host_offload: float  # bytes moved to CPU memory by offload settings
    reference: float = 0.0  # dpo, kto, grpo: a frozen reference copy (full weights only)
    generation: float = 0.0  # grpo: the KV cache of the sampled completions
    gathered: float = 0.0  # sharded weights gathered whole while they run: the embedding and two layers
    vllm: float = 0.0  # grpo with vLLM colocated: what its share of the GPU adds to training's peak
    logits: float = 0.0  # the LM head's output and the loss over it
    attention: float = 0.0  # attention scores, where the kernel materializes them (SDPA on the CPU)
    chunked_loss: bool = False
    loss_positions: int | None = None  # chunked: the most supervised positions a micro-batch holds at once

    @property
    def total(self) -> float:
        return (
            self.weights
            + self.gradients
            + self.optimizer
            + self.activations
            + self.logits
            + self.attention
            + self.reference
            + self.generation
            + self.gathered
            + self.vllm
        )


@dataclass(frozen=True)
class Plan:
    world_size: int
    precision: str
    attention: str
    global_batch_rows: int
    global_batch_tokens: int
    shape: ModelShape
    trainable_params: int
    memory: MemoryEstimate
    train_flops_per_token: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"memory_total": self.memory.total}


def resolve_precision(requested: str, env: Environment) -> str:
    if requested != "auto":
        return requested
    if not env.cuda:
        return "fp32"  # bf16 matmuls are ~300x slower than fp32 on CPUs without AVX-512 BF16
    return "bf16" if env.cuda_bf16 else "fp16"


def model_shape(spec: RunSpec, config) -> ModelShape:
    """Count parameters on the meta device; LoRA size from the adapted Linear layers' shapes."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=spec.model.trust_remote_code)
    total = sum(p.numel() for p in model.parameters())
    embedding = model.get_input_embeddings().weight.numel()
    head = model.get_output_embeddings()
    if head is not None and head.weight is not model.get_input_embeddings().weight:
        embedding += head.weight.numel()
    targets = set(spec.method.lora.target_modules)
    linear = lora = 0
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or module is head:
            continue
        linear += module.weight.numel()
        if "all-linear" in targets or name.rsplit(".", 1)[-1] in targets:
            lora += spec.method.lora.rank * (module.in_features + module.out_features)
            if spec.method.lora.use_dora:
                lora += module.out_features  # DoRA's magnitude vector
    text = getattr(config, "text_config", config)
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    return ModelShape(
        total_params=total,
        embedding_params=embedding,
        linear_params=linear,
        lora_params=lora,
        num_layers=text.num_hidden_layers,
        hidden_size=text.hidden_size,
        kv_size=getattr(text, "num_key_value_heads", heads) * head_dim,
        intermediate_size=getattr(text, "intermediate_size", 4 * text.hidden_size),
        vocab_size=text.vocab_size,
        decoder_layer_class=layer_class_of(model),
        num_heads=heads,
        rescales_logits=rescaled_logits(text) is not None,
    )


def layer_class_of(model) -> str:
    """The decoder layer class FSDP wraps as one unit (transformers lists it in _no_split_modules)."""
    return sorted(getattr(model, "_no_split_modules", None) or ["?"])[0]


def decoder_layer_class(config, *, trust_remote_code: bool = False) -> str:
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return layer_class_of(AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code))


def estimate_memory(
    spec: RunSpec,
    shape: ModelShape,
    precision: str,
    attention: str = "sdpa",
    cuda: bool = False,
    most_supervised: int | None = None,
    longest_row: int | None = None,
) -> MemoryEstimate:
    """Bytes per device. Full fine-tuning keeps fp32 master weights (autocast to bf16/fp16);
    LoRA keeps the frozen base in the compute dtype and the adapter in fp32; QLoRA keeps
    the decoder Linear weights in 4 bits (0.5 byte, plus ~0.127 bit of constants with
    double quantization, 0.5 bit without). Sized by the prepared data once it exists:
    `most_supervised`, the most supervised positions in one micro-batch (before, a whole chunk);
    `longest_row`, the longest row's tokens (before, dataset.max_length)."""
    act_bytes = 4 if precision == "fp32" else 2
    state = _sharded_state(spec, shape, *_training_state(spec, shape, act_bytes))
    length = sequence_tokens(spec, longest_row)
    logits, positions, chunked = _logit_bytes(spec, shape, length, most_supervised)
    scores = _counts_attention_scores(spec, attention, cuda)
    return MemoryEstimate(
        state.weights,
        state.gradients,
        state.optimizer,
        _activation_bytes(spec, shape, act_bytes, length),
        state.host,
        reference=_reference_bytes(spec, shape, act_bytes, state.weight_divisor),
        generation=_generation_bytes(spec, shape, act_bytes, length),
        gathered=state.gathered,
        logits=logits,
        attention=_attention_bytes(spec, shape, act_bytes, length) if scores else 0.0,
        chunked_loss=chunked,
        loss_positions=positions if chunked else None,
    )


def _training_state(spec: RunSpec, shape: ModelShape, act_bytes: int) -> tuple[float, float, float]:
    """(weights, gradients, optimizer states) in bytes on one device before any sharding."""
    method, n = spec.method.weights, shape.total_params
    if method == "full":
        trainable, weights = n, 4.0 * n
    elif method == "lora":
        trainable, weights = shape.lora_params, act_bytes * n + 4.0 * shape.lora_params
    else:
        constants = 0.127 if spec.method.quant.double_quant else 0.5
        quantized = shape.linear_params * (0.5 + constants / 8)
        rest = 4 if _upcasts_outside_4bit(spec) else act_bytes  # embeddings, head, norms
        weights = quantized + rest * (n - shape.linear_params) + 4.0 * shape.lora_params
        trainable = shape.lora_params
    optimizer = 2.0 if spec.optim.name == "adamw_8bit" else 8.0
    if spec.sharding.strategy == "deepspeed":
        # DeepSpeed holds the model in the compute dtype and keeps its own fp32 copy of what
        # trains beside the optimizer state (partitioned with it), also when training in fp32.
        optimizer += 4.0
        if method == "full":
            weights = act_bytes * n
    return weights, 4.0 * trainable, optimizer * trainable


def _upcasts_outside_4bit(spec: RunSpec) -> bool:
    """QLoRA in one process or under DDP: prepare_model_for_kbit_training casts every parameter that
    is not 4-bit (the embeddings, an untied head, the norms) to fp32. Under FSDP2 and ZeRO-3
    build_model freezes them in the dtype the 4-bit weights are stored in instead
    (`freeze_keeping_dtype`), and ZeRO-1/2 cast them back to the compute dtype as they wrap the model."""
    return spec.method.weights == "qlora" and spec.sharding.strategy not in ("fsdp", "deepspeed")


def residual_bytes(spec: RunSpec, act_bytes: int) -> int:
    """Bytes per element of the residual stream (the decoder layers' inputs and the norms' inputs).
    Autocast runs the matmuls in bf16/fp16 but not the embedding lookup, the norms (their weights
    multiply in their own dtype) or the residual sums: where those weights are fp32 (full
    fine-tuning's master weights; QLoRA's upcast) the stream stays fp32. FSDP2 casts the weights
    to the compute dtype for its forward and DeepSpeed holds them in it."""
    fp32_weights = spec.method.weights == "full" or _upcasts_outside_4bit(spec)
    if not fp32_weights or spec.sharding.strategy in ("fsdp", "deepspeed"):
        return act_bytes
    return 4


@dataclass(frozen=True)
class _DeviceState:
    weights: float
    gradients: float
    optimizer: float
    host: float  # what offload keeps in CPU memory instead
    weight_divisor: int  # how many devices share the weights (1 when they are not sharded)
    gathered: float  # sharded weights gathered whole at once


def _sharded_state(spec: RunSpec, shape: ModelShape, weights: float, grads: float, optimizer: float) -> _DeviceState:
    """What the sharding strategy leaves on one device, and what offload moves to the host."""
    sh = spec.sharding
    shard_weights = shard_grads = shard_optim = False
    divisor = 1
    if sh.strategy == "fsdp":
        shard_grads = shard_optim = True
        shard_weights = sh.fsdp.sharding in ("full_shard", "hybrid_shard")
        divisor = sh.nproc_per_node if sh.fsdp.sharding == "hybrid_shard" else sh.world_size
    elif sh.strategy == "deepspeed":
        stage = sh.deepspeed.stage
        shard_optim, shard_grads, shard_weights = True, stage >= 2, stage >= 3
        divisor = sh.world_size
    # FSDP2 and ZeRO-3 gather a unit's weights whole while it runs: the embedding and head (FSDP2's
    # root unit, gathered through the whole forward and backward) and a decoder layer with the next,
    # prefetched.
    layer = (shape.total_params - shape.embedding_params) / max(shape.num_layers, 1)
    gathered = weights / shape.total_params * (shape.embedding_params + 2 * layer) if shard_weights else 0.0
    weights = weights / divisor if shard_weights else weights
    gradients = grads / divisor if shard_grads else grads
    optimizer = optimizer / divisor if shard_optim else optimizer
    host = 0.0
    offload_all = sh.strategy == "fsdp" and sh.fsdp.cpu_offload
    if offload_all or (sh.strategy == "deepspeed" and sh.deepspeed.offload_optimizer):
        host += optimizer
        optimizer = 0.0
    if offload_all or (sh.strategy == "deepspeed" and sh.deepspeed.offload_params):
        host += weights + (gradients if offload_all else 0.0)
        # ZeRO-3 offload streams parameters to the GPU one layer at a time
        weights = weights / max(shape.num_layers, 1)
        gradients = 0.0 if offload_all else gradients
    return _DeviceState(weights, gradients, optimizer, host, divisor if shard_weights else 1, gathered)


def _activation_bytes(spec: RunSpec, shape: ModelShape, act_bytes: int, length: int) -> float:
    """What the decoder layers save for backward in one micro-batch of rows of `length` tokens."""
    tokens = spec.train.micro_batch_size * length
    h, kv, ffn = shape.hidden_size, shape.kv_size, shape.intermediate_size
    residual = residual_bytes(spec, act_bytes)
    # Saved for backward per token per layer: norms' inputs (the residual stream), q/k/v/attention
    # output, gate/up/act/product of the MLP (7h + 2kv + 4ffn elements).
    per_layer = tokens * (2 * h * residual + (5 * h + 2 * kv + 4 * ffn) * act_bytes)
    if spec.method.weights != "full" and spec.method.lora.dropout > 0:
        # PEFT keeps each adapted layer's dropped-out input and its mask for backward: q, k, v,
        # o, gate and up read h-wide inputs, down an ffn-wide one (all-linear; fewer otherwise).
        per_layer += tokens * (6 * h + ffn) * (act_bytes + 1)
    if spec.train.gradient_checkpointing:  # each layer's input is kept: the residual stream
        return float(shape.num_layers * tokens * h * residual + per_layer)
    return float(shape.num_layers * per_layer)


def _logit_bytes(spec: RunSpec, shape: ModelShape, length: int, most_supervised: int | None) -> tuple[float, int, bool]:
    """(bytes, positions, chunked) of the loss's logits: the chunked loss's chunk of supervised positions
    (fewer where the data holds fewer), or every position for the plain loss."""
    tokens = spec.train.micro_batch_size * length
    chunked = uses_chunked_loss(spec, shape)
    positions = min(CHUNK_TOKENS, tokens, tokens if most_supervised is None else most_supervised) if chunked else tokens
    logits = (CHUNKED_LOGIT_COPIES if chunked else PLAIN_LOGIT_COPIES) * positions * shape.vocab_size * 4
    if chunked and spec.method.weights == "full":
        # the head's fp32 gradient, which the chunked loss makes in its forward pass and holds
        # until backward adds it to the weight's own (counted under gradients)
        logits += 4.0 * shape.vocab_size * shape.hidden_size
    return float(logits), positions, chunked


def _counts_attention_scores(spec: RunSpec, attention: str, cuda: bool) -> bool:
    """Whether attention needs memory beyond the q, k, v and output the activations count: stock SDPA
    on the CPU. sdpa_packed attends sft's packed rows one sequence at a time with the causal kernel,
    which keeps only those (bench/plan_memory.py holds the estimate without the term to the live
    peak); the padded batches of dpo, kto and grpo take stock SDPA under it too."""
    if cuda:
        return False
    return attention == "sdpa" or (attention == PACKED_SDPA and spec.method.name != "sft")


def _attention_bytes(spec: RunSpec, shape: ModelShape, act_bytes: int, length: int) -> float:
    """SDPA on the CPU, sized as its attention scores. Not what the CPU kernel keeps (it saves q, the
    expanded k and v, the output and logsumexp per layer, no probabilities: bench/saved_activations.py):
    the term stands in for backward's temporaries. How the whole estimate compares with the measured
    peak is in BENCHMARKS.md; the heap glibc keeps on top of live memory is the allocator's, not modeled."""
    saved_layers = 1 if spec.train.gradient_checkpointing else shape.num_layers
    return float((saved_layers + 1) * spec.train.micro_batch_size * shape.num_heads * length * length * act_bytes)


# Full-vocabulary fp32 copies of the logits alive at the loss's peak. Plain: the logits, log-softmax
# and gradients, some freed early. Chunked: a chunk's logits and logsumexp's temporary; the gradient
# is written over the logits. Before the data exists a chunk is counted whole; run.json's estimate
# counts the most supervised positions a micro-batch of the prepared data holds, where that is fewer.
# The single-process memory test holds the estimate to the measured peak on the tiny model.
PLAIN_LOGIT_COPIES = 2.75
CHUNKED_LOGIT_COPIES = 2.0


def uses_chunked_loss(spec: RunSpec, shape: ModelShape) -> bool:
    return spec.train.loss_kernel != "plain" and chunked_loss_blocked(spec) is None and not shape.rescales_logits


def sequence_tokens(spec: RunSpec, longest_row: int | None = None) -> int:
    """Tokens one micro-batch row puts through the model: a packed row (sft), chosen plus
    rejected (dpo), prompt plus completion (kto, and each sampled completion of grpo). Rows
    are padded to the longest in their micro-batch: the prepared data's longest row (for grpo,
    its longest prompt) bounds them where it is shorter than dataset.max_length."""
    m, length = spec.method, spec.dataset.max_length
    if longest_row is not None:
        length = min(length, longest_row)
    return {"dpo": 2 * length, "grpo": length + m.max_completion_length}.get(m.name, length)


def _reference_bytes(spec: RunSpec, shape: ModelShape, act_bytes: int, divisor: int) -> float:
    """A frozen copy of the model, in the compute dtype, when the reference cannot be the
    base with the adapter switched off: full weights, unless its log-probs are precomputed
    (dpo, kto) or GRPO runs without the KL term (beta 0)."""
    m = spec.method
    if m.name == "sft" or m.weights != "full" or m.precompute_reference or (m.name == "grpo" and m.beta == 0):
        return 0.0
    return act_bytes * shape.total_params / divisor


def _generation_bytes(spec: RunSpec, shape: ModelShape, act_bytes: int, length: int) -> float:
    """GRPO samples micro_batch_size completions at once: keys and values of every layer
    for prompt plus completion tokens (`length`), plus the last position's logits."""
    m = spec.method
    if m.name != "grpo":
        return 0.0
    tokens = spec.train.micro_batch_size * length
    return float(
        tokens * shape.num_layers * 2 * shape.kv_size * act_bytes + spec.train.micro_batch_size * shape.vocab_size * 4
    )


def with_vllm(spec: RunSpec, env: Environment, memory: MemoryEstimate) -> MemoryEstimate:
    """GRPO sampling through vLLM: transformers' KV cache is not held (vLLM keeps its own). Colocated,
    vLLM holds method.vllm_gpu_memory_utilization of the GPU (its copy of the weights, its KV cache
    and activations) beside training. In sleep mode it releases that share while the model trains:
    it raises the peak only where the share and what training keeps between steps (weights,
    optimizer states, a reference copy) exceed training's own peak. Not yet measured on a GPU."""
    m = spec.method
    generation = resolve_generation(m.generation, env) if m.name == "grpo" else "transformers"
    if generation == "transformers":
        return memory
    memory = dataclasses.replace(memory, generation=0.0)
    if generation != "vllm_colocate":
        return memory
    share = m.vllm_gpu_memory_utilization * env.gpu_memory_bytes
    if m.vllm_sleep_mode:
        kept = memory.weights + memory.optimizer + memory.reference
        share = max(0.0, kept + share - memory.total)
    return dataclasses.replace(memory, vllm=share)


def train_flops_per_token(spec: RunSpec, shape: ModelShape) -> float:
    """Forward = 2 FLOPs per non-embedding parameter plus attention (2 * layers * context * hidden
    for causal QK^T and AV). Backward costs 2x forward with weight gradients (full), about 1x
    without (LoRA: only input gradients, plus the small adapter). Checkpointing adds a forward."""
    dense = 2.0 * (shape.total_params - shape.embedding_params) + 2.0 * shape.hidden_size * shape.vocab_size
    attention = 2.0 * shape.num_layers * spec.dataset.max_length * shape.hidden_size
    forward = dense + attention
    backward = 2.0 * forward if spec.method.weights == "full" else forward + 4.0 * shape.lora_params
    recompute = forward if spec.train.gradient_checkpointing else 0.0
    return forward + backward + recompute


def make_plan(
    spec: RunSpec, env: Environment, config, most_supervised: int | None = None, longest_row: int | None = None
) -> Plan:

    shape = model_shape(spec, config)
    precision = resolve_precision(spec.train.precision, env)
    rows = spec.train.micro_batch_size * spec.train.gradient_accumulation_steps * spec.sharding.world_size
    attention = resolve_attention(spec.model.attn_implementation, env, config)
    return Plan(
        world_size=spec.sharding.world_size,
        precision=precision,
        attention=attention,
        global_batch_rows=rows,
        global_batch_tokens=rows * sequence_tokens(spec, longest_row),
        shape=shape,
        trainable_params=shape.total_params if spec.method.weights == "full" else shape.lora_params,
        memory=with_vllm(
            spec, env, estimate_memory(spec, shape, precision, attention, env.cuda, most_supervised, longest_row)
        ),
        train_flops_per_token=train_flops_per_token(spec, shape),
    )


def _human(n: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(int(n))


def render_plan(spec: RunSpec, plan: Plan) -> str:
    m, s, sh = plan.memory, plan.shape, spec.sharding
    lines = [
        "hydratune plan",
        "==============",
        f"model        {spec.model.name}{' (random init)' if spec.model.random_init else ''}",
        f"method       {spec.method.name}, weights {spec.method.weights}"
        + (
            f" (rank {spec.method.lora.rank}, alpha {spec.method.lora.alpha:g})"
            if spec.method.weights != "full"
            else ""
        )
        + _reference_line(spec),
        f"sharding     {sh.strategy}: {sh.nnodes} node(s) x {sh.nproc_per_node} process(es) = world size "
        f"{plan.world_size}",
        f"precision    {plan.precision}, attention {plan.attention}",
        f"dataset      {spec.dataset.path} ({spec.dataset.format}), rows of {spec.dataset.max_length} tokens, "
        f"packing {'on' if spec.dataset.packing and spec.method.name == 'sft' else 'off'}",
        f"batch        {spec.train.micro_batch_size} rows/device x {spec.train.gradient_accumulation_steps} "
        f"accumulation x {plan.world_size} = "
        f"{plan.global_batch_rows} rows = {plan.global_batch_tokens:,} tokens per optimizer step",
        f"steps        {spec.train.max_steps if spec.train.max_steps else f'{spec.train.epochs:g} epoch(s)'}",
        f"parameters   {_human(s.total_params)} total, {_human(plan.trainable_params)} trainable "
        f"({100.0 * plan.trainable_params / max(s.total_params, 1):.2f}%)",
        f"FLOPs/token  {plan.train_flops_per_token / 1e9:.2f} GFLOP for training",
        "memory per device (estimate)",
        f"  weights      {m.weights / GIB:8.2f} GiB",
        f"  gradients    {m.gradients / GIB:8.2f} GiB",
        f"  optimizer    {m.optimizer / GIB:8.2f} GiB",
        f"  activations  {m.activations / GIB:8.2f} GiB ({spec.train.micro_batch_size} x "
        f"{plan.global_batch_tokens // plan.global_batch_rows} tokens, "
        f"checkpointing {'on' if spec.train.gradient_checkpointing else 'off'})",
        f"  logits       {m.logits / GIB:8.2f} GiB ("
        + (
            f"chunked loss: at most {m.loss_positions} supervised positions at once"
            + (", and the head's gradient)" if spec.method.weights == "full" else ")")
            if m.chunked_loss
            else "every position, fp32)"
        ),
        *_optional_memory_lines(spec, m),
        f"  total        {m.total / GIB:8.2f} GiB"
        + (f"  (+{m.host_offload / GIB:.2f} GiB offloaded to CPU memory)" if m.host_offload else ""),
        f"output       {spec.output_dir}",
    ]
    return "\n".join(lines)


def _optional_memory_lines(spec: RunSpec, m: MemoryEstimate) -> list[str]:
    """The plan's memory terms that only some runs have."""
    lines = []
    if m.attention:
        lines.append(f"  attention    {m.attention / GIB:8.2f} GiB (SDPA on the CPU, sized as its attention scores)")
    if m.reference:
        lines.append(f"  reference    {m.reference / GIB:8.2f} GiB (a frozen copy of the start model)")
    if m.generation:
        lines.append(
            f"  generation   {m.generation / GIB:8.2f} GiB (KV cache of {spec.train.micro_batch_size} completions)"
        )
    if m.gathered:
        lines.append(
            f"  gathered     {m.gathered / GIB:8.2f} GiB (sharded weights gathered to run: embedding, two layers)"
        )
    if m.vllm:
        sleeping = ", beyond training's peak: sleep mode" if spec.method.vllm_sleep_mode else ""
        lines.append(
            f"  vllm         {m.vllm / GIB:8.2f} GiB (vLLM colocated, "
            f"{spec.method.vllm_gpu_memory_utilization:g} of the GPU{sleeping})"
        )
    return lines


def _reference_line(spec: RunSpec) -> str:
    m = spec.method
    if m.name == "sft":
        return ""
    if m.precompute_reference:
        return "; reference log-probs precomputed once"
    if m.name == "grpo" and m.beta == 0:
        return f"; {m.num_generations} completions per prompt, no KL term (no reference)"
    where = "a frozen copy" if m.weights == "full" else "the base with the adapter off"
    extra = f"; {m.num_generations} completions per prompt" if m.name == "grpo" else ""
    return f"; reference: {where}{extra}"


def write_plan(spec: RunSpec, plan: Plan, directory: Path, *, disk: dict | None = None) -> None:
    """plan.json: the spec and the plan, with the disk estimate (training/disk_estimate.py) when given."""
    directory.mkdir(parents=True, exist_ok=True)
    record = {"spec": without_credentials(dataclasses.asdict(spec)), "plan": plan.to_dict()}
    write_json_atomic(RunDirectory(directory).plan, record if disk is None else {**record, "disk": disk})


def plan_run(
    spec: RunSpec,
    *,
    quiet: bool = False,
    save: bool = True,
    most_supervised: int | None = None,
    longest_row: int | None = None,
) -> Plan:
    """The plan from the model's config alone (no weights), printed and saved as plan.json;
    sized by the prepared data where `most_supervised` and `longest_row` are given (after
    preprocessing)."""

    try:
        config = load_model_config(spec.model, cache_root(spec.run.cache_dir), convert=False)
    except (OSError, ValueError) as error:  # Hub unreachable, gated, misspelled, or not a model directory
        raise ConfigError(
            [
                Problem(
                    f"model.name={spec.model.name}",
                    f"cannot read the model's config ({str(error).splitlines()[0]})",
                    "check the name and your network or HF token (huggingface-cli login), or use a local directory",
                )
            ]
        ) from None
    plan = make_plan(spec, detect_environment(), config, most_supervised, longest_row)
    if not quiet:
        print(render_plan(spec, plan), flush=True)
    if save:
        write_plan(spec, plan, spec.output_dir)
    return plan
