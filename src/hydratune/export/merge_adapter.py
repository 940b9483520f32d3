"""merged/: a plain transformers model directory from a run's adapter or full weights.

The base is always reloaded in fp32 from its source (for QLoRA too: merging into 4-bit
weights would keep them 4-bit), on the device the placement names (the GPU after a GPU run),
the adapter applied, logits taken on a few held-out
rows, the adapter merged, and the logits compared: the max absolute difference is the
parity recorded in run.json. merged/ is written beside as a scratch folder and moved
into place whole, so a rerun replaces it safely.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from pathlib import Path

import torch
from filelock import FileLock
from transformers import AutoModelForCausalLM

from hydratune.cache_dirs import cache_root
from hydratune.config.spec import RunSpec
from hydratune.data.prepare_data import run_preprocess
from hydratune.disk_space import disk_full_exits
from hydratune.models.chat_templates import stop_token_ids
from hydratune.models.inference_placement import CPU_FP32, Placement
from hydratune.models.model_loading import load_base_model, load_tokenizer
from hydratune.run_layout import RunDirectory
from hydratune.training.parity_rows import load_parity_rows, parity_batch

log = logging.getLogger(__name__)


def run_parity_batch(spec: RunSpec, tokenizer) -> dict[str, torch.Tensor]:
    """The parity rows the run kept when it trained; a run made before they were kept reads them
    from its data (a cache hit where the cache and the data are still there)."""
    layout = RunDirectory(spec.output_dir)
    if layout.parity_rows.is_file():
        return load_parity_rows(layout.parity_rows)
    log.info(
        "merged/: %s has no %s (an older run): reading its rows from the data", layout.root, layout.parity_rows.name
    )
    prepared = run_preprocess(spec, tokenizer=tokenizer)
    return parity_batch(prepared.load("eval") or prepared.load("train"), tokenizer)


@torch.no_grad()
def _logits(model, batch) -> torch.Tensor:
    model.eval()
    batch = {k: v.to(model.device) for k, v in batch.items()}
    return model(**batch, use_cache=False).logits.float()


def export_merged(
    spec: RunSpec, weights: Path, *, save_dtype: torch.dtype = torch.float32, placement: Placement = CPU_FP32
) -> dict:
    """Write spec.output_dir/merged from `weights` (an adapter or full-weights directory). An adapter
    is merged in fp32 on `placement`'s device, so that the parity holds to fp32 rounding; full
    weights need no arithmetic and load straight in `save_dtype` there."""
    root = cache_root(spec.run.cache_dir)
    tokenizer = load_tokenizer(spec.model, root)
    started = time.perf_counter()
    if (weights / "adapter_config.json").is_file():
        model, parity = _merged_adapter(spec, weights, tokenizer, started, placement)
    else:
        log.info("merged/: loading the trained weights from %s", weights)
        model = AutoModelForCausalLM.from_pretrained(
            str(weights),
            dtype=save_dtype,
            device_map=placement.device_map,
            trust_remote_code=spec.model.trust_remote_code,
        )
        parity = None
    model.config.use_cache = True  # for serving
    model = model.to(save_dtype)
    _set_generation_stop(model, tokenizer)
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    dtype = str(save_dtype).replace("torch.", "")
    log.info("merged/: writing %.2f GB of %s weights (%.0f s so far)", size / 1e9, dtype, time.perf_counter() - started)
    target = _replace_merged(spec.output_dir, model, tokenizer)
    return {"merged_dir": str(target), "from": str(weights), "parity": parity, "dtype": dtype}


def _merged_adapter(spec: RunSpec, adapter: Path, tokenizer, started: float, placement: Placement):
    """(the base with the adapter merged in, the parity of merged vs base+adapter on the run's parity rows)."""
    from peft import PeftModel  # imports bitsandbytes where it is installed: only when an adapter is merged

    log.info("merged/: loading the base model %s and the adapter", spec.model.name)
    base = load_base_model(
        spec.model,
        cache_root(spec.run.cache_dir),
        dtype=torch.float32,
        attn_implementation="sdpa",
        device_map=placement.device_map,
    )
    model = PeftModel.from_pretrained(base, str(adapter))
    batch = run_parity_batch(spec, tokenizer)
    before = _logits(model, batch)
    log.info("merged/: merging the adapter into the weights (%.0f s so far)", time.perf_counter() - started)
    model = model.merge_and_unload()
    after = _logits(model, batch)
    parity = {
        "max_abs_logit_diff": float((before - after).abs().max()),
        "rows": int(batch["input_ids"].shape[0]),
        "tokens": int(batch["input_ids"].numel()),
    }
    log.info("merged vs base+adapter: max |logit diff| = %.3g", parity["max_abs_logit_diff"])
    return model, parity


def _replace_merged(run_dir: Path, model, tokenizer) -> Path:
    """merged/ replaced whole: written beside as scratch, then renamed into place under the run's merge lock."""
    layout = RunDirectory(run_dir)
    with FileLock(str(layout.merge_lock)):  # two exports of one run take turns
        recover_merged(run_dir)
        scratch = run_dir / f".merged.tmp-{uuid.uuid4().hex[:8]}"
        try:
            with disk_full_exits(layout.merged, name_file=False):  # the scratch's name would mean nothing to a user
                model.save_pretrained(str(scratch), safe_serialization=True)
                tokenizer.save_pretrained(str(scratch))
            old = None
            if layout.merged.exists():
                old = layout.merged.rename(run_dir / f".merged.old-{uuid.uuid4().hex[:8]}")
            # A kill here leaves no merged/ but a whole .merged.old-*: recover_merged() puts it back.
            os.replace(scratch, layout.merged)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return layout.merged


def recover_merged(run_dir: Path) -> None:
    """Undo what a killed export left: the previous merged/ moved aside is put back, scratch is removed.
    Callers hold the run's merge lock (or, like evaluation, only read after it)."""
    target = RunDirectory(run_dir).merged
    aside = sorted(run_dir.glob(".merged.old-*"), key=lambda p: p.stat().st_mtime)
    if not target.exists() and aside:
        log.warning("restoring %s from %s (an export was interrupted)", target, aside[-1].name)
        os.replace(aside.pop(), target)
    for leftover in [*aside, *run_dir.glob(".merged.tmp-*")]:
        shutil.rmtree(leftover, ignore_errors=True)


def _set_generation_stop(model, tokenizer) -> None:
    """Stop generation at the end-of-turn token as well as EOS (vLLM and generate() read this)."""
    stops = stop_token_ids(tokenizer)
    model.generation_config.eos_token_id = stops if len(stops) > 1 else stops[0]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
