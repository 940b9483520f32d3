"""`hydratune-export RUN_DIR_OR_CHECKPOINT`: (re)build merged/ from a run or one of its checkpoints.

It reads the run's spec.json for the base model and method instead of asking again,
and is safe to rerun: merged/ is replaced whole. With --push-to-hub it writes a model
card (README.md) into the folder it publishes and uploads it with huggingface_hub.

    hydratune-export outputs/runs/2026-11-25_10-00-00
    hydratune-export outputs/runs/2026-11-25_10-00-00/checkpoints/checkpoint-200
    hydratune-export outputs/runs/2026-11-25_10-00-00 --push-to-hub me/smollm2-gsm8k --private
    hydratune-export outputs/runs/2026-11-25_10-00-00 --push-to-hub me/smollm2-gsm8k-lora --adapter-only
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path

from hydratune.atomic_dir import write_json_atomic
from hydratune.config.cli import user_errors_exit
from hydratune.config.problems import ConfigError, Problem
from hydratune.outputs.run_record import RUN_FILE, SPEC_FILE, load_spec
from hydratune.export.model_card import write_model_card
from hydratune.export.push_to_hub import PushError, push_folder
from hydratune.run_layout import RunDirectory

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


def locate(path: Path) -> tuple[Path, Path | None]:
    """(run dir, checkpoint dir or None) for a run dir or a checkpoint inside one."""
    path = path.resolve()
    if (path / SPEC_FILE).is_file():
        return path, None
    if path.name.startswith("checkpoint-") and (path.parents[1] / SPEC_FILE).is_file():
        return path.parents[1], path
    raise ConfigError([Problem(str(path), f"neither a hydratune run directory (with {SPEC_FILE}) nor a checkpoint inside one",
                               "give a run directory (outputs/runs/<time>) or one of its checkpoints/checkpoint-N")])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="hydratune-export", description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path, help="a run directory, or a checkpoint-N folder inside one")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default=None, help="dtype of merged/ (default: what the run trained in)")
    parser.add_argument("--push-to-hub", metavar="OWNER/NAME", default=None,
                        help="write a model card and upload merged/ (or adapter/) to this Hub repository")
    parser.add_argument("--private", action="store_true", help="create the Hub repository private")
    parser.add_argument("--adapter-only", action="store_true", help="publish adapter/ (PEFT) instead of merged/; nothing is merged")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")

    with user_errors_exit():
        if args.push_to_hub is None:
            if args.private or args.adapter_only:
                raise ConfigError([Problem("--private/--adapter-only", "only apply when publishing", "add --push-to-hub OWNER/NAME")])
            export_run(args.path, args.dtype)
            return
        try:
            publish_run(args.path, args.push_to_hub, dtype_name=args.dtype, private=args.private, adapter_only=args.adapter_only)
        except PushError as error:
            print(f"Error: {error}", file=sys.stderr)
            sys.exit(error.exit_code)


def publish_run(path: Path, repo_id: str, *, dtype_name: str | None, private: bool, adapter_only: bool) -> str:
    """Model card, then upload: merged/ (rebuilt first, as without --push-to-hub) or adapter/."""
    run_dir, checkpoint = locate(path)
    problems = []
    if not REPO_ID.match(repo_id):
        problems.append(Problem(f"--push-to-hub {repo_id}", "is not a Hub repository id", "give OWNER/NAME, e.g. my-user/smollm2-gsm8k"))
    if not (run_dir / RUN_FILE).is_file():
        problems.append(Problem(str(run_dir), f"has no {RUN_FILE}: the run has not finished, and the model card is built from it",
                                "finish the run (train with train.resume=auto), then publish"))
    if checkpoint is not None:
        problems.append(Problem(str(path), "a checkpoint is not published", "give the run directory"))
    if adapter_only and not (run_dir / "adapter" / "adapter_config.json").is_file():
        problems.append(Problem("--adapter-only", f"{run_dir} trained full weights and has no adapter/", "drop --adapter-only to publish merged/"))
    if problems:
        raise ConfigError(problems)
    if adapter_only:
        folder = run_dir / "adapter"
    else:
        folder = Path(export_run(run_dir, dtype_name)["merged_dir"])
    card = write_model_card(run_dir, folder, repo_id=repo_id, adapter=adapter_only)
    print(f"model card: {card}", flush=True)
    url = push_folder(folder, repo_id, private=private, message=f"hydratune: {folder.name}/ of run {run_dir.name}")
    print(f"pushed {folder} to {url}", flush=True)
    return url


def export_run(path: Path, dtype_name: str | None) -> dict:
    import torch

    # torch, transformers, peft: imported once the arguments are checked
    from hydratune.export.consolidate_checkpoint import consolidated, is_sharded
    from hydratune.export.merge_adapter import export_merged

    run_dir, checkpoint = locate(path)
    spec = load_spec(run_dir)
    record_path = run_dir / RUN_FILE
    record = json.loads(record_path.read_text()) if record_path.is_file() else None
    trained_bf16 = record is not None and record.get("precision") == "bf16"
    dtype = getattr(torch, dtype_name) if dtype_name else (torch.bfloat16 if trained_bf16 else torch.float32)
    weights = checkpoint or RunDirectory(run_dir).weights(spec.method.weights)
    if is_sharded(weights):  # an FSDP2 checkpoint: its shards gathered first
        with consolidated(spec, weights) as whole:
            result = {**export_merged(spec, whole, save_dtype=dtype), "from": str(weights)}
    else:
        result = export_merged(spec, weights, save_dtype=dtype)
    if record is not None:
        record["export"] = result
        write_json_atomic(record_path, record)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
