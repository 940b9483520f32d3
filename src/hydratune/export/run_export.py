"""A finished run, exported and published: merged/ rebuilt from its weights or one of its
checkpoints (what `hydratune-export` runs), and the folder uploaded with its model card.

It reads the run's spec.json for the base model and method instead of asking again, and is
safe to rerun: merged/ is replaced whole.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from hydratune.atomic_dir import write_json_atomic
from hydratune.config.environment import detect_environment
from hydratune.config.problems import ConfigError, Problem
from hydratune.config.spec_file import load_spec
from hydratune.export.consolidate_checkpoint import consolidated, is_sharded
from hydratune.export.merge_adapter import export_merged
from hydratune.export.model_card import write_model_card
from hydratune.export.push_to_hub import push_folder
from hydratune.models.inference_placement import inference_placement
from hydratune.run_layout import RunDirectory
from hydratune.training.checkpoints import COMPLETE_MARKER, complete_checkpoints

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


def locate(path: Path) -> tuple[Path, Path | None]:
    """(run dir, checkpoint dir or None) for a run dir or a checkpoint inside one."""
    path = path.resolve()
    if RunDirectory(path).is_run():
        return path, None
    if path.name.startswith("checkpoint-") and RunDirectory(path.parents[1]).is_run():
        if not path.is_dir():
            raise ConfigError([Problem(str(path), "no such checkpoint", how_to_export(path.parents[1]))])
        if not (path / COMPLETE_MARKER).is_file():  # its save failed (a full disk) or was stopped: never read
            problem = f"is not a complete checkpoint (no {COMPLETE_MARKER}: its save did not finish)"
            raise ConfigError([Problem(str(path), problem, how_to_export(path.parents[1]))])
        return path.parents[1], path
    raise ConfigError(
        [
            Problem(
                str(path),
                "neither a hydratune run directory (with spec.json) nor a checkpoint inside one",
                "give a run directory (outputs/runs/<time>) or one of its checkpoints/checkpoint-N",
            )
        ]
    )


def export_run(path: Path, dtype_name: str | None) -> dict:
    """merged/ of a run, rebuilt from its trained weights or one of its checkpoints; run.json records it."""
    run_dir, checkpoint = locate(path)
    spec, layout = load_spec(run_dir), RunDirectory(run_dir)
    record = json.loads(layout.record.read_text()) if layout.finished() else None
    trained_bf16 = record is not None and record.get("precision") == "bf16"
    dtype = getattr(torch, dtype_name) if dtype_name else (torch.bfloat16 if trained_bf16 else torch.float32)
    weights = checkpoint or layout.weights(spec.method.weights)
    if not weights.is_dir():
        problem = f"has no {weights.name}/: the run has not finished training (a dry run, or one that stopped)"
        raise ConfigError([Problem(str(run_dir), problem, how_to_export(run_dir))])
    # On a GPU machine the merge runs there (in fp32 for an adapter, as export_merged says).
    placement = inference_placement(detect_environment(), "bf16" if trained_bf16 else "fp32")
    if is_sharded(weights):  # an FSDP2 checkpoint: its shards gathered first
        with consolidated(spec, weights) as whole:
            result = {**export_merged(spec, whole, save_dtype=dtype, placement=placement), "from": str(weights)}
    else:
        result = export_merged(spec, weights, save_dtype=dtype, placement=placement)
    if record is not None:
        record["export"] = result
        write_json_atomic(layout.record, record)
    print(json.dumps(result, indent=2))
    return result


def how_to_export(run_dir: Path) -> str:
    """The fix where a run has no export to give: export its trained weights, or a complete checkpoint,
    or finish the run."""
    layout = RunDirectory(run_dir)
    if layout.adapter.is_dir() or layout.trained.is_dir():
        return f"export its trained weights: hydratune-export {run_dir}"
    found = complete_checkpoints(layout.checkpoints)
    resume = f"finish the run: its train command again, with train.resume=auto hydra.run.dir={run_dir}"
    if not found:
        return resume
    names = ", ".join(p.name for p in found)
    return f"export one it has: hydratune-export {found[-1]} (checkpoints: {names}), or {resume}"


def publish_run(path: Path, repo_id: str, *, dtype_name: str | None, private: bool, adapter_only: bool) -> str:
    """Model card, then upload: merged/ (rebuilt first, as without --push-to-hub) or adapter/."""
    run_dir, checkpoint = locate(path)
    problems = []
    if not REPO_ID.match(repo_id):
        problems.append(
            Problem(
                f"--push-to-hub {repo_id}", "is not a Hub repository id", "give OWNER/NAME, e.g. my-user/smollm2-gsm8k"
            )
        )
    layout = RunDirectory(run_dir)
    if not layout.finished():
        problems.append(
            Problem(
                str(run_dir),
                "has no run.json: the run has not finished, and the model card is built from it",
                "finish the run (train with train.resume=auto), then publish",
            )
        )
    if checkpoint is not None:
        problems.append(Problem(str(path), "a checkpoint is not published", "give the run directory"))
    if adapter_only and not (layout.adapter / "adapter_config.json").is_file():
        problems.append(
            Problem(
                "--adapter-only",
                f"{run_dir} trained full weights and has no adapter/",
                "drop --adapter-only to publish merged/",
            )
        )
    if problems:
        raise ConfigError(problems)
    folder = layout.adapter if adapter_only else Path(export_run(run_dir, dtype_name)["merged_dir"])
    card = write_model_card(run_dir, folder, repo_id=repo_id, adapter=adapter_only)
    print(f"model card: {card}", flush=True)
    url = push_folder(folder, repo_id, private=private, message=f"hydratune: {folder.name}/ of run {run_dir.name}")
    print(f"pushed {folder} to {url}", flush=True)
    return url
