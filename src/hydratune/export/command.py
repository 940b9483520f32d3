"""`hydratune-export RUN_DIR_OR_CHECKPOINT`: (re)build merged/ from a run or one of its checkpoints.

It reads the run's spec.json for the base model and method instead of asking again,
and is safe to rerun: merged/ is replaced whole.

    hydratune-export outputs/runs/2026-11-25_10-00-00
    hydratune-export outputs/runs/2026-11-25_10-00-00/checkpoints/checkpoint-200
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from hydratune.atomic_dir import write_json_atomic
from hydratune.config.cli import user_errors_exit
from hydratune.config.problems import ConfigError, Problem
from hydratune.outputs.run_record import RUN_FILE, SPEC_FILE, load_spec
from hydratune.training.fit import weights_dir
from hydratune.export.merge_adapter import export_merged


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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")

    with user_errors_exit():
        export_run(args.path, args.dtype)


def export_run(path: Path, dtype_name: str | None) -> dict:
    import torch

    run_dir, checkpoint = locate(path)
    spec = load_spec(run_dir)
    record_path = run_dir / RUN_FILE
    record = json.loads(record_path.read_text()) if record_path.is_file() else None
    trained_bf16 = record is not None and record.get("precision") == "bf16"
    dtype = getattr(torch, dtype_name) if dtype_name else (torch.bfloat16 if trained_bf16 else torch.float32)
    result = export_merged(spec, checkpoint or weights_dir(spec), save_dtype=dtype)
    if record is not None:
        record["export"] = result
        write_json_atomic(record_path, record)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
