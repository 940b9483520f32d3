"""What `evaluate` can score: a run directory, a merged or adapter directory, or a model name."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Optional

import torch
from filelock import FileLock

from hydratune.config.problems import ConfigError, Problem
from hydratune.config.spec import ModelSpec, RunSpec
from hydratune.config.spec_file import load_spec
from hydratune.evaluate.run_evaluation import EvalTarget
from hydratune.export.merge_adapter import recover_merged
from hydratune.export.run_export import how_to_export
from hydratune.models.inference_placement import CPU_FP32, Placement
from hydratune.models.model_loading import (
    load_base_model,
    load_tokenizer,
    model_location,
)
from hydratune.run_layout import RunDirectory


def base_target(
    model: ModelSpec, cache_root: Path, label: str = "base", *, placement: Placement = CPU_FP32
) -> EvalTarget:
    """A base model by spec (Hub id, local dir or the embedded one); its results are cached."""

    def load():
        loaded = load_base_model(
            model, cache_root, dtype=placement.dtype, attn_implementation="sdpa", device_map=placement.device_map
        )
        return loaded, load_tokenizer(model, cache_root)

    # vLLM loads what from_pretrained loads: the converted or materialized directory, a local one, or the Hub id
    location = Path(model_location(model, cache_root))
    identity = dataclasses.asdict(model)
    if location.is_dir():  # a local directory (an earlier run's merged/) can be rewritten in place
        identity["files"] = sorted(
            (f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in location.iterdir() if f.is_file()
        )
    if placement.dtype != torch.float32:  # bf16 greedy decoding can pick other tokens than fp32's
        identity["dtype"] = str(placement.dtype).removeprefix("torch.")
    return EvalTarget(
        label, load, directory=location, cache_identity=identity, trust_remote_code=model.trust_remote_code
    )


def merged_target(
    directory: Path, label: str = "tuned", *, trust_remote_code: bool = False, placement: Placement = CPU_FP32
) -> EvalTarget:
    def load():
        from transformers import AutoModelForCausalLM, AutoTokenizer

        return (
            AutoModelForCausalLM.from_pretrained(
                str(directory), trust_remote_code=trust_remote_code, **placement.load_kwargs()
            ),
            AutoTokenizer.from_pretrained(str(directory), trust_remote_code=trust_remote_code),
        )

    return EvalTarget(label, load, directory=directory, trust_remote_code=trust_remote_code)


def adapter_base_name(directory: Path) -> str:
    return json.loads((directory / "adapter_config.json").read_text())["base_model_name_or_path"]


def adapter_target(
    directory: Path, label: str = "tuned", *, trust_remote_code: bool = False, placement: Placement = CPU_FP32
) -> EvalTarget:
    """Base + adapter, unmerged (its predictions must equal merged/'s)."""

    def load():
        from peft import AutoPeftModelForCausalLM
        from transformers import AutoTokenizer

        return (
            AutoPeftModelForCausalLM.from_pretrained(
                str(directory), trust_remote_code=trust_remote_code, **placement.load_kwargs()
            ),
            AutoTokenizer.from_pretrained(str(directory), trust_remote_code=trust_remote_code),
        )

    return EvalTarget(label, load, directory=None, trust_remote_code=trust_remote_code)


@dataclasses.dataclass(frozen=True)
class ResolvedTarget:
    tuned: EvalTarget
    base_model: Optional[ModelSpec]  # what to compare against, when known
    spec: Optional[RunSpec]  # the run's spec, for a run directory
    kind: str


def _require_merged(run_dir: Path) -> None:
    """A run without merged/ (a dry run, one that stopped before export) is refused with what to run instead."""
    if (RunDirectory(run_dir).merged / "config.json").is_file():
        return
    problem = "has no merged/ (a dry run, or a run that stopped before export)"
    raise ConfigError([Problem(str(run_dir), problem, how_to_export(run_dir))])


def resolve_target(
    target: str, cache_root: Path, *, trust_remote_code: bool = False, placement: Placement = CPU_FP32
) -> ResolvedTarget:
    """What `target` names. Model code runs only as `trust_remote_code` (the user's --trust-remote-code)
    says: a run directory may come from anyone, and its spec never grants it."""
    path = Path(target).expanduser()
    if target.startswith(("/", "./", "../", "~")) and not path.exists():  # a path, not a Hub id
        raise ConfigError(
            [
                Problem(
                    target,
                    "no such run, model or adapter directory",
                    "give a run directory, its merged/ or adapter/, or a model name (Hub id, embedded:...)",
                )
            ]
        )
    if RunDirectory(path).is_run():
        spec = load_spec(path)
        trust_remote_code = code_trusted(path, spec, trust_remote_code)
        with FileLock(str(RunDirectory(path).merge_lock)):
            recover_merged(path)  # an interrupted export moved the previous merged/ aside
        _require_merged(path)
        return ResolvedTarget(
            merged_target(RunDirectory(path).merged, trust_remote_code=trust_remote_code, placement=placement),
            dataclasses.replace(spec.model, trust_remote_code=trust_remote_code),
            spec,
            "run",
        )
    if RunDirectory(path.parent).is_run():  # a run's merged/ or adapter/
        trust_remote_code = code_trusted(path.parent, load_spec(path.parent), trust_remote_code)
    if (path / "adapter_config.json").is_file():
        base = ModelSpec(name=adapter_base_name(path), trust_remote_code=trust_remote_code)
        tuned = adapter_target(path, trust_remote_code=trust_remote_code, placement=placement)
        return ResolvedTarget(tuned, base, None, "adapter")
    if (path / "config.json").is_file():
        tuned = merged_target(path, trust_remote_code=trust_remote_code, placement=placement)
        return ResolvedTarget(tuned, None, None, "merged")
    model = ModelSpec(name=target, trust_remote_code=trust_remote_code)
    return ResolvedTarget(base_target(model, cache_root, label=target, placement=placement), None, None, "model")


def code_trusted(run_dir: Path, spec: RunSpec, flag: bool) -> bool:
    """Whether a run's model code may run: only on the user's flag. A run made with
    model.trust_remote_code=true is refused without it, before anything is loaded."""
    if spec.model.trust_remote_code and not flag:
        raise ConfigError(
            [
                Problem(
                    "--trust-remote-code",
                    f"{run_dir} was trained with model.trust_remote_code=true: loading it runs the Python code "
                    "its model folder ships, which a run directory cannot vouch for",
                    "read that code; if you trust it, add --trust-remote-code",
                )
            ]
        )
    return flag
