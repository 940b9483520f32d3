"""What autograd keeps for the backward pass of one LoRA step of the embedded SmolLM2-135M on
the training bench's batch (4 packed rows of 512 tokens, fp32, SDPA, hydratune's chunked loss),
beside the plan's activation and attention terms. Separates what the plan's estimate counts
from what the process's peak RSS adds on top (backward's temporaries, the allocator's retention).

    python bench/saved_activations.py

Each saved tensor is counted once per storage, parameters (and views of them) excluded; the
largest groups are listed by shape. Prints JSON.
"""

from __future__ import annotations

import collections
import json

import torch

ROWS, LENGTH = 4, 512


def main() -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from hydratune.cache_dirs import cache_root
    from hydratune.commands.cli import compose_spec
    from hydratune.models.model_loading import model_location
    from hydratune.training.lean_loss import lean_causal_lm_loss
    from hydratune.training.plan import estimate_memory, model_shape

    spec = compose_spec(
        [
            "+experiment=quickstart",
            "method.lora.rank=16",
            "method.lora.alpha=32",
            f"dataset.max_length={LENGTH}",
            f"train.micro_batch_size={ROWS}",
        ]
    )
    path = model_location(spec.model, cache_root())
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa", dtype=torch.float32)
    model.config.use_cache = False
    estimate = estimate_memory(spec, model_shape(spec, model.config), "fp32")
    model = get_peft_model(
        model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear")
    ).train()
    parameter_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}

    ids = torch.randint(10, 40000, (ROWS, LENGTH))
    positions = torch.cat([torch.arange(200), torch.arange(LENGTH - 200)]).repeat(ROWS, 1)  # two sequences per row
    labels = ids.clone()
    labels[:, :100] = -100
    seen: dict[int, int] = {}
    by_shape: collections.Counter = collections.Counter()

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = t.untyped_storage().data_ptr()
        if key not in parameter_storages and key not in seen:
            seen[key] = t.untyped_storage().nbytes()
            by_shape[f"{tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}"] += seen[key]
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        lean_causal_lm_loss(model, {"input_ids": ids, "position_ids": positions, "labels": labels}, None)
    gib = 2**30
    print(
        json.dumps(
            {
                "saved_for_backward_gib": sum(seen.values()) / gib,
                "plan_activations_gib": estimate.activations / gib,
                "plan_attention_scores_gib": estimate.attention / gib,
                "plan_total_gib": estimate.total / gib,
                "largest_groups_mb": {k: round(v / 2**20, 1) for k, v in by_shape.most_common(8)},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
