"""`train`: compose a run, print its plan, then preprocess, train, export and evaluate it.

train +experiment=quickstart
train +experiment=gsm8k_qlora model=llama3_1_8b optim.learning_rate=1e-4
train -m +experiment=gsm8k_lora optim.lr=1e-4,3e-4 method.lora.rank=8,16
"""

from __future__ import annotations

from typing import Any

from hydra.core.hydra_config import HydraConfig

from hydratune.commands.cli import hydra_entry
from hydratune.config.spec import RunSpec
from hydratune.disk_space import disk_full_exits
from hydratune.training.upstream_patches import import_bitsandbytes_only_if_used

# A run the disk stopped holds its spec: the same command alone would be refused as a second run there.
CONTINUE_AFTER_DISK_FULL = (
    "continue the run: the same command with train.resume=auto; or start over with hydra.run.dir=<a bigger disk>"
)


def run_train(spec: RunSpec) -> Any:
    sweep_job = HydraConfig.get().mode.name == "MULTIRUN"
    if not sweep_job:  # a sweep's later jobs may quantize
        import_bitsandbytes_only_if_used(spec)
    # Imported only now: the training stack imports peft, which may import bitsandbytes.
    from hydratune.pipeline.run_training import run_training

    with disk_full_exits(spec.output_dir, fix=CONTINUE_AFTER_DISK_FULL):  # one message, exit 1, no traceback
        return run_training(spec, sweep_job=sweep_job)


main = hydra_entry(run_train, job_name="train", claims_run_directory=True)

if __name__ == "__main__":
    main()
