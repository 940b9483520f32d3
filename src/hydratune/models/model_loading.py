"""Load configs, tokenizers and base models from the Hub, a local directory or the embedded default.

The Hub path is real: a name that is neither a directory nor the embedded model is
passed to `from_pretrained` as a Hub id (with `revision`), so the same configs run on
a user's machine with network access.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydratune.atomic_dir import build_once
from hydratune.config.spec import EMBEDDED_SMOLLM2, ModelSpec
from hydratune.models.attention_choice import PACKED_SDPA
from hydratune.models.chat_templates import template_source
from hydratune.models.earlier_run import earlier_run_dir, earlier_run_model
from hydratune.models.embedded_model import converted_dir, embedded_config

log = logging.getLogger(__name__)


def model_location(model: ModelSpec, cache_root: Path) -> str:
    """What `from_pretrained` gets: a converted embedded dir, a local dir or a Hub id.
    A random_init model is materialized once into the cache, so that it loads (and
    quantizes) through the same `from_pretrained` path as real weights."""
    if model.random_init:
        return str(_random_weights_dir(model, cache_root))
    return _pretrained_location(model, cache_root)


def _pretrained_location(model: ModelSpec, cache_root: Path) -> str:
    if model.name == EMBEDDED_SMOLLM2:
        return str(converted_dir(cache_root))
    run_dir = earlier_run_dir(model.name)
    if run_dir is not None:  # an earlier hydratune run: start from its merged model
        return str(earlier_run_model(run_dir).resolve())
    local = Path(model.name).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise FileNotFoundError(
                f"model.name={model.name}: the directory has no config.json (is it a model directory?)"
            )
        return str(local.resolve())
    return model.name


def _hub_kwargs(model: ModelSpec) -> dict[str, Any]:
    return {"revision": model.revision, "trust_remote_code": model.trust_remote_code}


def load_model_config(model: ModelSpec, cache_root: Path, *, convert: bool = True):
    """The model config with `config_overrides` applied. With convert=False the embedded
    model's config is read from its GGUF header instead of converting the weights."""
    from transformers import AutoConfig

    if model.name == EMBEDDED_SMOLLM2 and not convert:
        config = embedded_config(cache_root)
    else:
        config = AutoConfig.from_pretrained(_pretrained_location(model, cache_root), **_hub_kwargs(model))
    for key, value in model.config_overrides.items():
        if not hasattr(config, key):
            raise ValueError(f"model.config_overrides.{key}: {type(config).__name__} has no such field")
        setattr(config, key, value)
    return config


def load_tokenizer(model: ModelSpec, cache_root: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_location(model, cache_root), **_hub_kwargs(model))
    if model.chat_template is not None:
        tokenizer.chat_template = template_source(model.chat_template)
    if tokenizer.pad_token is None:
        # Padding only appears in eval and generation batches; its labels are always masked.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base_model(
    model: ModelSpec,
    cache_root: Path,
    *,
    dtype,
    attn_implementation: str,
    quantization_config=None,
    device_map=None,
):
    """The base model, ready for the method to wrap."""
    from transformers import AutoModelForCausalLM

    if attn_implementation == PACKED_SDPA:
        from hydratune.models.packed_attention import register_packed_sdpa

        register_packed_sdpa()
    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": attn_implementation, **_hub_kwargs(model)}
    if not model.random_init:
        kwargs["config"] = load_model_config(model, cache_root)
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    if device_map is not None:
        kwargs["device_map"] = device_map
    return AutoModelForCausalLM.from_pretrained(model_location(model, cache_root), **kwargs)


def _random_weights_dir(model: ModelSpec, cache_root: Path) -> Path:
    """Random weights (seed 0) for the model's config with overrides, saved once with its tokenizer."""
    import hashlib
    import json

    config = load_model_config(model, cache_root)
    key = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:16]

    def build(out: Path) -> dict:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(config).save_pretrained(out, safe_serialization=True)
        AutoTokenizer.from_pretrained(_pretrained_location(model, cache_root), **_hub_kwargs(model)).save_pretrained(
            out
        )
        return {"random_init_of": model.name, "config_sha256_prefix": key}

    path, _ = build_once(cache_root / "models" / f"random-{config.model_type}-{key}", build)
    return path
