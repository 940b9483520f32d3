"""The embedded SmolLM2 resolves, converts once, loads and chats; tiny models build from a config."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from hydratune.cache_dirs import cache_root
from hydratune.commands.cli import compose_spec
from hydratune.models.model_loading import load_base_model, load_tokenizer, model_location

from ..conftest import cpu_env

log = logging.getLogger(__name__)


@pytest.mark.slow
def test_embedded_model_converts_once_and_generates():
    spec = compose_spec(["model=smollm2_135m"], env=cpu_env())
    root = cache_root()
    start = time.perf_counter()
    first = Path(model_location(spec.model, root))
    convert_s = time.perf_counter() - start
    start = time.perf_counter()
    second = Path(model_location(spec.model, root))
    hit_s = time.perf_counter() - start
    log.warning("embedded model: first resolve %.2fs, second (cache hit) %.2fs", convert_s, hit_s)
    assert first == second
    assert (first / "model.safetensors").is_file() and (first / "manifest.json").is_file()
    assert not list(first.parent.glob(".*.tmp-*")), "a scratch directory was left behind"

    tokenizer = load_tokenizer(spec.model, root)
    model = load_base_model(spec.model, root, dtype="float32", attn_implementation="sdpa")
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2+3?"}], add_generation_prompt=True, return_dict=True, return_tensors="pt"
    )
    out = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    reply = tokenizer.decode(out[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "5" in reply, reply


def test_embedded_config_reads_the_conversion_once_it_exists(tmp_path):
    """The plan reads the config from the GGUF header only until the weights are converted;
    both give the same architecture."""
    from hydratune.models.embedded_model import converted_dir, embedded_config

    header = embedded_config(tmp_path)  # an empty cache: no conversion yet
    assert not (tmp_path / "models").exists()
    converted = embedded_config(cache_root())
    assert converted_dir(cache_root()).is_dir()
    fields = [
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "tie_word_embeddings",
        "max_position_embeddings",
        "rope_theta",
    ]
    assert {f: getattr(header, f, None) for f in fields} == {f: getattr(converted, f, None) for f in fields}


def test_tiny_model_is_random_and_small(tmp_path):
    spec = compose_spec(["model=tiny_llama"], env=cpu_env())
    model = load_base_model(spec.model, cache_root(), dtype="float32", attn_implementation="sdpa")
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 64
    assert sum(p.numel() for p in model.parameters()) < 4_000_000


def test_local_directory_without_config_is_rejected(tmp_path):
    spec = compose_spec([f"model.name={tmp_path}"], env=cpu_env())
    with pytest.raises(FileNotFoundError, match="no config.json"):
        model_location(spec.model, cache_root())
