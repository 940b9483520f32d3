"""A checkpoint FSDP2 saved sharded, as the plain folder an export reads.

FSDP2 checkpoints keep each rank's shard of the model in `pytorch_model_fsdp_0/`
(torch.distributed.checkpoint) and no config.json (trainer_args.fsdp_settings explains
why). The shards are gathered into one state dict, as accelerate's `merge-weights` does,
and written the way the run writes its final weights: adapter_config.json and
adapter_model.safetensors for LoRA and QLoRA, config.json and model.safetensors for full
weights. ZeRO-3 checkpoints need none of this: their save already gathers the weights.
"""

from __future__ import annotations

import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from hydratune.cache_dirs import cache_root
from hydratune.config.spec import RunSpec
from hydratune.models.model_loading import load_model_config, model_location
from hydratune.training.build_model import lora_config

FSDP_MODEL_DIR = "pytorch_model_fsdp_0"


def is_sharded(checkpoint: Path) -> bool:
    return (checkpoint / FSDP_MODEL_DIR).is_dir()


@contextmanager
def consolidated(spec: RunSpec, checkpoint: Path) -> Iterator[Path]:
    """A scratch folder beside the run's outputs holding `checkpoint`'s weights whole; removed afterwards."""
    from accelerate.utils import merge_fsdp_weights

    scratch = spec.output_dir / f".consolidated.tmp-{uuid.uuid4().hex[:8]}"
    try:
        merge_fsdp_weights(str(checkpoint / FSDP_MODEL_DIR), str(scratch), safe_serialization=True)
        root = cache_root(spec.run.cache_dir)
        if spec.method.weights == "full":
            load_model_config(spec.model, root).save_pretrained(str(scratch))
        else:  # the shards hold the adapter alone, under PEFT's saved names
            (scratch / "model.safetensors").rename(scratch / "adapter_model.safetensors")
            config = lora_config(spec.method)
            config.base_model_name_or_path = model_location(spec.model, root)
            config.save_pretrained(str(scratch))
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
