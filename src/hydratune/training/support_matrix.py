"""Which methods run under which sharding strategy, where the chunked loss runs, and the loss
variants of TRL's trainers.

Rows: the weights trained (any objective) and the post-training objectives (any weights); a
run is supported when both of its rows say yes. Written once: validation enforces it, the
README prints it (a test keeps the two equal), the distributed tests run it.
"""

from __future__ import annotations

from hydratune.config.environment import Environment
from hydratune.config.spec import RunSpec

SUPPORT_MATRIX: dict[str, dict[str, str]] = {
    "full": {"single": "yes", "ddp": "yes", "fsdp": "yes", "deepspeed": "yes (ZeRO-1/2/3, offload)"},
    "lora": {"single": "yes", "ddp": "yes", "fsdp": "yes", "deepspeed": "yes (ZeRO-1/2/3, offload)"},
    "qlora": {"single": "yes", "ddp": "yes", "fsdp": "yes", "deepspeed": "yes (ZeRO-1/2/3, offload)"},
    "dpo": {"single": "yes", "ddp": "yes", "fsdp": "yes", "deepspeed": "yes (ZeRO-1/2/3, offload)"},
    "kto": {"single": "yes", "ddp": "yes", "fsdp": "yes", "deepspeed": "yes (ZeRO-1/2/3, offload)"},
    "grpo": {"single": "yes", "ddp": "yes", "fsdp": "yes", "deepspeed": "yes (ZeRO-1/2/3, offload)"},
}

# The loss variants TRL's trainers implement, per method (the first is the default).
LOSS_TYPES = {
    "dpo": (
        "sigmoid",
        "ipo",
        "hinge",
        "robust",
        "bco_pair",
        "sppo_hard",
        "nca_pair",
        "exo_pair",
        "aot",
        "aot_unpaired",
        "apo_zero",
        "apo_down",
        "discopop",
        "sigmoid_norm",
    ),
    "kto": ("kto", "apo_zero_unpaired"),
    "grpo": ("dapo", "grpo", "dr_grpo", "bnpo", "cispo", "sapo", "luspo", "vespo"),
}


# The chunked loss computes this many supervised positions' logits at a time (the plan sizes their memory).
CHUNK_TOKENS = 256
# Models whose head output is rescaled before the softmax: the chunked loss would differ.
RESCALED_LOGITS = ("final_logit_softcapping", "logit_scale", "output_multiplier_scale")


def rescaled_logits(config) -> str | None:
    """`key=value` of the setting with which a model rescales its logits, or None."""
    for name in RESCALED_LOGITS:
        if getattr(config, name, None) not in (None, 1.0):
            return f"{name}={getattr(config, name)}"
    return None


def chunked_loss_blocked(spec: RunSpec) -> str | None:
    """Why the chunked SFT loss cannot run with this spec, or None."""
    if spec.method.name != "sft":
        return f"method={spec.method.name} computes its own loss"
    return None


def resolve_generation(choice: str, env: Environment) -> str:
    """Who samples GRPO's completions: method.generation, with auto resolved for this machine."""
    if choice != "auto":
        return choice
    return "vllm_colocate" if env.cuda and env.has("vllm") else "transformers"


def supported(row: str, strategy: str) -> bool:
    return SUPPORT_MATRIX[row][strategy].startswith("yes")


def support_matrix_markdown() -> str:
    strategies = list(next(iter(SUPPORT_MATRIX.values())))
    lines = ["| method | " + " | ".join(strategies) + " |", "|---" * (len(strategies) + 1) + "|"]
    for method, row in SUPPORT_MATRIX.items():
        lines.append(f"| {method} | " + " | ".join(row[s] for s in strategies) + " |")
    return "\n".join(lines)
