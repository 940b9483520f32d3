"""`hydratune-export RUN_DIR_OR_CHECKPOINT`: (re)build merged/ from a run or one of its checkpoints.

Safe to rerun: merged/ is replaced whole. With --push-to-hub it writes a model card
(README.md) into the folder it publishes and uploads it with huggingface_hub.

    hydratune-export outputs/runs/2026-11-25_10-00-00
    hydratune-export outputs/runs/2026-11-25_10-00-00/checkpoints/checkpoint-200
    hydratune-export outputs/runs/2026-11-25_10-00-00 --push-to-hub me/smollm2-gsm8k --private
    hydratune-export outputs/runs/2026-11-25_10-00-00 --push-to-hub me/smollm2-gsm8k-lora --adapter-only
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from hydratune.commands.cli import user_errors_exit
from hydratune.config.problems import ConfigError, Problem


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="hydratune-export", description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path, help="a run directory, or a checkpoint-N folder inside one")
    parser.add_argument(
        "--dtype",
        choices=["float32", "bfloat16"],
        default=None,
        help="dtype of merged/ (default: what the run trained in)",
    )
    parser.add_argument(
        "--push-to-hub",
        metavar="OWNER/NAME",
        default=None,
        help="write a model card and upload merged/ (or adapter/) to this Hub repository",
    )
    parser.add_argument("--private", action="store_true", help="create the Hub repository private")
    parser.add_argument(
        "--adapter-only", action="store_true", help="publish adapter/ (PEFT) instead of merged/; nothing is merged"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")

    with user_errors_exit():
        # torch, transformers, peft: imported once the arguments are checked
        from hydratune.export.run_export import export_run, publish_run

        if args.push_to_hub is None:
            if args.private or args.adapter_only:
                raise ConfigError(
                    [Problem("--private/--adapter-only", "only apply when publishing", "add --push-to-hub OWNER/NAME")]
                )
            export_run(args.path, args.dtype)
            return
        publish_run(
            args.path, args.push_to_hub, dtype_name=args.dtype, private=args.private, adapter_only=args.adapter_only
        )


if __name__ == "__main__":
    main(sys.argv[1:])
